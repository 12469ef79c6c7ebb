"""Descriptions end to end: request -> Description row -> task -> worker -> streamed text.

Through the tiny Qwen2-VL (transformers backend) and the fake OpenAI-compatible server.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from search.catalog.models import Image
from search.descriptions import rag
from search.descriptions import services as describe
from search.descriptions.models import Description
from search.descriptions.queue import DESCRIPTIONS
from search.descriptions.services import NoSuchSubject
from search.ops import jobs
from search.queries.models import SearchQuery
from search.queries.services import text_search
from tests.fixtures.backends import queued_tasks, run_queued_tasks, task_statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def query(search_index, vlm_settings, user):
    vlm_settings.TINYRAG_VLM_MIN_NEW_TOKENS = 4  # a random-weight model may stop at once
    return text_search(user=user, text="lemon", top_k=5)


def run_worker() -> list[str]:
    """Run every queued task through the real worker (the configured backend's); the tasks'
    statuses afterwards, for assertion messages."""
    run_queued_tasks()
    return task_statuses()


def first_result(query: SearchQuery) -> Image:
    return query.results.get(rank=1).image


def test_request_queues_a_task_with_the_retrieved_context(query):
    image = first_result(query)
    description = describe.request_description(query=query, image_id=image.pk)

    assert description.status == "queued"
    assert (description.backend, description.prompt_version) == ("transformers", "rag-v1")
    context = description.context
    assert context["k"] == 5
    neighbour_ids = [n["image_id"] for n in context["neighbours"]]
    assert image.pk not in neighbour_ids  # the image never votes for itself
    assert len(neighbour_ids) == 5
    # candidates re-counted independently from the neighbours' labels
    votes = {}
    for n in context["neighbours"]:
        votes[n["wnid"]] = votes.get(n["wnid"], 0) + 1
    assert {c["wnid"]: c["votes"] for c in context["candidates"]} == votes
    assert description.prompt == rag.build_prompt("retrieved", context)
    # one place in the queue, for whichever row is fairest
    assert queued_tasks() == queued_tasks("search.descriptions.tasks.generate_description") == 1


def test_worker_streams_the_text_into_the_row(query):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    run_worker()
    description.refresh_from_db()
    assert description.status == "done", description.error
    assert description.text
    assert 4 <= description.tokens <= 8
    assert description.time_to_first_token_ms > 0
    assert description.started_at <= description.finished_at
    assert description.attempts == 1


def test_context_none_gives_the_image_only(query):
    description = describe.request_description(
        query=query, image_id=first_result(query).pk, context_mode="none"
    )
    assert description.context == {}
    assert "categor" not in description.prompt


def test_identical_request_reuses_and_regenerate_forces_a_new_one(query, other_user):
    image = first_result(query)
    first = describe.request_description(query=query, image_id=image.pk)
    assert describe.request_description(query=query, image_id=image.pk) == first  # in flight
    run_worker()
    first.refresh_from_db()

    other_query = text_search(user=other_user, text="lemon", top_k=5)
    reused = describe.request_description(query=other_query, image_id=image.pk)
    assert (reused.status, reused.text, reused.reused_from) == ("done", first.text, first)
    assert len(task_statuses()) == 1  # nothing generated again

    fresh = describe.request_description(query=query, image_id=image.pk, regenerate=True)
    assert fresh.status == "queued"
    assert fresh.reused_from is None


def test_only_the_querys_images_can_be_described(query):
    stranger = Image.objects.exclude(pk__in=query.results.values("image_id")).first()
    with pytest.raises(NoSuchSubject, match="not among this query's images"):
        describe.request_description(query=query, image_id=stranger.pk)
    with pytest.raises(NoSuchSubject, match="no uploaded image"):
        describe.request_description(query=query)


def test_disabled_backend(query, settings):
    settings.TINYRAG_VLM_BACKEND = "none"
    with pytest.raises(describe.DescriptionsDisabled):
        describe.request_description(query=query, image_id=first_result(query).pk)


def test_a_failure_marks_the_row_and_the_worker_goes_on(query, monkeypatch):
    images = [r.image for r in query.results.order_by("rank")[:2]]
    broken, fine = (describe.request_description(query=query, image_id=i.pk) for i in images)
    real_open = describe.open_subject

    def open_or_fail(q, image):
        if image is not None and image.pk == images[0].pk:
            raise OSError("image file is truncated")
        return real_open(q, image)

    monkeypatch.setattr(describe, "open_subject", open_or_fail)
    run_worker()
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert (broken.status, broken.error) == ("failed", "image file is truncated")
    assert fine.status == "done"


def test_missing_model_fails_readably(query, settings, tmp_path):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    settings.TINYRAG_VLM_MODEL = str(tmp_path / "no-such-model")
    from search.ml.registry import registry

    registry.clear()
    run_worker()
    description.refresh_from_db()
    assert description.status == "failed"
    assert "TINYRAG_VLM_MODEL" in description.error


def test_stalled_row_is_retried_once_then_failed(query, settings):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    old = timezone.now() - timedelta(seconds=settings.TINYRAG_DESCRIPTION_STALL_SECONDS + 1)
    # a worker took it and died (kill -9): running, attempt 1, no progress since
    Description.objects.filter(pk=description.pk).update(
        status="running", attempts=1, updated_at=old
    )
    assert jobs.recover_stalled(DESCRIPTIONS) == 1
    description.refresh_from_db()
    assert description.status == "queued"
    assert len(task_statuses()) == 2  # enqueued again for a live worker
    run_worker()
    description.refresh_from_db()
    assert (description.status, description.attempts) == ("done", 2)

    second = describe.request_description(
        query=query, image_id=first_result(query).pk, regenerate=True
    )
    Description.objects.filter(pk=second.pk).update(status="running", attempts=2, updated_at=old)
    jobs.recover_stalled(DESCRIPTIONS)
    second.refresh_from_db()
    assert second.status == "failed"
    assert "stopped making progress" in second.error


def test_openai_backend_through_the_worker(
    search_index, openai_vlm_settings, fake_vlm_server, user
):
    query = text_search(user=user, text="lemon", top_k=5)
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    run_worker()
    description.refresh_from_db()
    assert description.status == "done", description.error
    assert description.text == "A small red fish in water."
    assert description.tokens == len(fake_vlm_server.chunks)  # one streamed chunk per token
    sent = fake_vlm_server.requests[-1].body
    parts = sent["messages"][-1]["content"]
    assert {"type": "text", "text": description.prompt} in parts
    assert description.backend == "openai"


def test_openai_server_error_ends_failed(search_index, openai_vlm_settings, fake_vlm_server, user):
    fake_vlm_server.set_error(503, "model is loading")
    query = text_search(user=user, text="lemon", top_k=5)
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    run_worker()
    description.refresh_from_db()
    assert description.status == "failed"
    assert "503" in description.error
    assert "model is loading" in description.error


def test_upload_query_describes_the_upload(search_index, vlm_settings, user, auth_client):
    from tests.search.test_views import png_of, search, upload

    target = Image.objects.filter(split="train").first()
    search(auth_client, image=upload(png_of(search_index / target.path)))
    query = SearchQuery.objects.get(kind="image")
    description = describe.request_description(query=query)
    assert description.image is None
    assert description.image_key.startswith("upload:")
    assert target.pk in [n["image_id"] for n in description.context["neighbours"]]
    run_worker()
    description.refresh_from_db()
    assert description.status == "done", description.error


def test_htmx_describe_polls_until_done(query, auth_client):
    image = first_result(query)
    response = auth_client.post(
        reverse("search:describe", args=[query.pk]), {"image_id": image.pk}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    description = Description.objects.get()
    assert html.lstrip().startswith(f'<article id="description-{description.pk}"')
    assert 'hx-trigger="every 1s"' in html

    run_worker()
    description.refresh_from_db()
    poll = auth_client.get(
        reverse("search:description", args=[description.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "hx-trigger" not in poll  # finished: polling stops
    assert escape(description.text) in poll
    page = auth_client.get(reverse("search:query", args=[query.pk])).content.decode()
    assert f'id="description-{description.pk}"' in page  # back from the history: same state


def test_no_js_describe_redirects_to_the_description_page(query, auth_client):
    response = auth_client.post(
        reverse("search:describe", args=[query.pk]), {"image_id": first_result(query).pk}
    )
    description = Description.objects.get()
    assert response["Location"] == reverse("search:description", args=[description.pk])
    assert auth_client.get(response["Location"]).status_code == 200


def test_other_users_description_is_404(query, client, other_user):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    client.force_login(other_user)
    assert client.get(reverse("search:description", args=[description.pk])).status_code == 404
    url = reverse("search:description-regenerate", args=[description.pk])
    assert client.post(url).status_code == 404
    assert (
        client.post(
            reverse("search:describe", args=[query.pk]), {"image_id": first_result(query).pk}
        ).status_code
        == 404
    )


def test_describe_button_is_hidden_when_disabled(query, auth_client, settings):
    url = reverse("search:query", args=[query.pk])
    assert ">Describe</button>" in auth_client.get(url).content.decode()
    settings.TINYRAG_VLM_BACKEND = "none"
    assert ">Describe</button>" not in auth_client.get(url).content.decode()


# --- what people see ---------------------------------------------------------------------------


def test_a_blank_generation_is_a_failure_not_an_empty_card(
    search_index, openai_vlm_settings, fake_vlm_server, user
):
    fake_vlm_server.chunks = ["\n", "   ", "\n\n"]  # the model "wrote" only white space
    query = text_search(user=user, text="lemon", top_k=5)
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    run_worker()
    description.refresh_from_db()
    assert description.status == "failed"
    assert "no text" in description.error


def test_the_text_is_stored_without_surrounding_white_space(
    search_index, openai_vlm_settings, fake_vlm_server, user
):
    fake_vlm_server.chunks = ["\n\n  A red ", "fish.", "\n\n\n"]
    query = text_search(user=user, text="lemon", top_k=5)
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    run_worker()
    description.refresh_from_db()
    assert (description.status, description.text) == ("done", "A red fish.")


def test_describe_again_once_written_shows_one_card(query, auth_client):
    image = first_result(query)
    first = describe.request_description(query=query, image_id=image.pk)
    run_worker()
    again = describe.request_description(query=query, image_id=image.pk)  # a copy, no new run
    assert again.reused_from == first
    html = auth_client.get(reverse("search:query", args=[query.pk])).content.decode()
    assert html.count('<article id="description-') == 1
    assert f'id="description-{again.pk}"' in html


def test_the_results_page_shows_one_card_per_image_on_its_result(query, auth_client):
    image = first_result(query)
    old = describe.request_description(query=query, image_id=image.pk)
    run_worker()
    new = describe.request_description(query=query, image_id=image.pk, regenerate=True)
    html = auth_client.get(reverse("search:query", args=[query.pk])).content.decode()
    assert f'id="description-{new.pk}"' in html
    assert f'id="description-{old.pk}"' not in html
    slot = html[html.index(f'id="describe-{image.pk}"') :]
    assert slot.index(f'id="description-{new.pk}"') < slot.index("</li>")  # on the result


def test_the_no_js_description_page_refreshes_itself_until_done(query, auth_client):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    url = reverse("search:description", args=[description.pk])
    refresh = '<noscript><meta http-equiv="refresh" content="3"></noscript>'
    assert refresh in auth_client.get(url).content.decode()
    run_worker()
    assert refresh not in auth_client.get(url).content.decode()


def test_waiting_says_what_a_user_can_expect_and_staff_what_to_run(query, auth_client, user):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    url = reverse("search:description", args=[description.pk])
    html = auth_client.get(url).content.decode()
    assert "Waiting for its turn" in html
    assert "manage.py worker" not in html
    assert "(transformers)" not in html  # the backend is an operator's detail
    user.is_staff = True
    user.save()
    html = auth_client.get(url).content.decode()
    assert "<code>manage.py worker</code>" in html
    assert "(transformers)" in html


def test_a_failure_tells_users_what_to_do_and_staff_why(query, auth_client, user, settings):
    description = describe.request_description(query=query, image_id=first_result(query).pk)
    jobs.finish(DESCRIPTIONS, description.pk, error="TINYRAG_VLM_URL is not reachable")
    url = reverse("search:description", args=[description.pk])
    html = auth_client.get(url).content.decode()
    assert "This description could not be written. Try Regenerate" in html
    assert "TINYRAG_VLM_URL" not in html
    user.is_staff = True
    user.save()
    assert "Staff: TINYRAG_VLM_URL is not reachable" in auth_client.get(url).content.decode()


@pytest.mark.parametrize("htmx", [False, True])
def test_a_malformed_describe_request_is_a_clear_message(query, auth_client, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = auth_client.post(
        reverse("search:describe", args=[query.pk]), {"image_id": "x"}, **headers
    )
    html = response.content.decode()
    # HTMX swaps no 4xx: the card's place gets the message; a page is a 400
    assert response.status_code == (200 if htmx else 400)
    assert response["Content-Type"].startswith("text/html")
    assert "This request to describe an image could not be read." in html
    assert "image_id: Enter a whole number." in html
    assert ("<html" in html) is not htmx
    assert not query.descriptions.exists()


# --- in the reader's language ----------------------------------------------------------------


def translate_classes() -> dict[str, str]:
    """Give every class an Indonesian name and synonym (made up, distinct from the English);
    returns wnid -> the Indonesian name."""
    from search.catalog.models import ImageClass

    names = {}
    for cls in ImageClass.objects.all():
        names[cls.wnid] = f"kelas {cls.wnid}"
        cls.translations = {"id": {"name": names[cls.wnid], "synonyms": [f"sinonim {cls.wnid}"]}}
        cls.save(update_fields=["translations"])
    return names


def test_an_indonesian_description_is_asked_for_in_indonesian_with_indonesian_labels(query):
    indonesian = translate_classes()
    description = describe.request_description(
        query=query, image_id=first_result(query).pk, language="id"
    )

    assert (description.language, description.prompt_version) == ("id", "rag-id-v1")
    assert description.prompt.startswith("Jelaskan gambar ini dengan setia")
    assert "dalam bahasa Indonesia" in description.prompt
    candidates = description.context["candidates"]
    assert candidates  # the neighbours' classes, each by its wnid and its Indonesian names
    for c in candidates:
        assert (c["name"], c["synonyms"]) == (indonesian[c["wnid"]], [f"sinonim {c['wnid']}"])
        assert f"{c['name']} (juga: sinonim {c['wnid']}): {c['votes']} dari 5" in description.prompt
    run_worker()  # the tiny model writes random text: that it is written is what counts here
    description.refresh_from_db()
    assert description.status == "done", description.error


def test_a_description_is_reused_only_in_the_same_language(query, other_user):
    translate_classes()
    image = first_result(query)
    english = describe.request_description(query=query, image_id=image.pk)
    run_worker()
    english.refresh_from_db()
    assert english.status == "done", english.error

    other_query = text_search(user=other_user, text="lemon", top_k=5)
    indonesian = describe.request_description(query=other_query, image_id=image.pk, language="id")
    assert (indonesian.status, indonesian.reused_from, indonesian.generates) == (
        "queued",
        None,
        True,
    )  # an English text is no Indonesian description
    assert indonesian.generation_key != english.generation_key
    run_worker()
    indonesian.refresh_from_db()

    again_en = describe.request_description(query=other_query, image_id=image.pk, language="en")
    again_id = describe.request_description(query=query, image_id=image.pk, language="id")
    assert (again_en.reused_from, again_en.language, again_en.text) == (
        english,
        "en",
        english.text,
    )
    assert (again_id.reused_from, again_id.language) == (indonesian, "id")
    assert len(task_statuses()) == 2  # one generation per language


def test_an_unknown_description_language_is_refused(query):
    from search.queries.services import SearchInputError

    with pytest.raises(SearchInputError, match="language must be one of en, id"):
        describe.request_description(query=query, image_id=first_result(query).pk, language="fr")
    assert not Description.objects.exists()


def test_a_page_describes_in_its_language_and_regenerate_keeps_it(query, auth_client):
    image = first_result(query)
    response = auth_client.post(
        reverse("search:describe", args=[query.pk]),
        {"image_id": image.pk},
        HTTP_ACCEPT_LANGUAGE="id",
    )
    description = Description.objects.get()
    assert response.status_code == 302
    assert (description.language, description.prompt_version) == ("id", "rag-id-v1")
    run_worker()

    # read on an English page: the card says the text is Indonesian and marks it so
    html = auth_client.get(
        reverse("search:description", args=[description.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "Written in Indonesian" in html
    assert '<p class="description-text" lang="id">' in html
    same = auth_client.get(
        reverse("search:description", args=[description.pk]), HTTP_ACCEPT_LANGUAGE="id"
    ).content.decode()
    assert "description-language" not in same  # in the page's own language: nothing to say

    auth_client.post(
        reverse("search:description-regenerate", args=[description.pk]), HTTP_ACCEPT_LANGUAGE="en"
    )
    fresh = Description.objects.exclude(pk=description.pk).get()
    assert (fresh.language, fresh.status, fresh.reused_from) == ("id", "queued", None)


def test_an_english_page_describes_in_english(query, auth_client):
    auth_client.post(
        reverse("search:describe", args=[query.pk]),
        {"image_id": first_result(query).pk},
        HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9",
    )
    assert Description.objects.get().language == "en"
