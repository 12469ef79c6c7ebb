"""The search page as people use it: the text + image rule, the class picker, the minimum
similarity, readable results, paging, and the model-loading state (through the Django client;
tests/browser/test_search_ux.py drives the same in Chromium)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from search.catalog.models import Image
from search.queries import selectors
from search.queries.models import SearchQuery
from search.queries.services import TEXT_AND_IMAGE
from tests.search.test_views import png_of, search, upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_state")]

LEMON = "n07749582"


def page_of(client, query: SearchQuery, **params) -> str:
    return client.get(reverse("search:query", args=[query.pk]), params).content.decode()


def ranks_in(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li class="result[^"]*" id="result-(\d+)"', html)]


def a_png(search_index) -> bytes:
    return png_of(search_index / Image.objects.filter(split="train").first().path)


# --- a text and an image together ------------------------------------------------------------


def test_text_and_image_together_are_refused_with_the_rule_without_js(auth_client, search_index):
    response = search(auth_client, text="school bus", image=upload(a_png(search_index)))
    assert response.status_code == 400
    assert str(TEXT_AND_IMAGE) in response.content.decode()
    assert not SearchQuery.objects.exists()


def test_text_and_image_together_are_refused_in_the_htmx_partial(auth_client, search_index):
    response = search(auth_client, htmx=True, text="school bus", image=upload(a_png(search_index)))
    html = response.content.decode()
    assert response.status_code == 200  # HTMX swaps 2xx only: the message replaces the results
    assert html.lstrip().startswith('<section id="results"')
    assert str(TEXT_AND_IMAGE) in html
    assert "data-query=" not in html  # nothing ran: the page keeps the chosen image
    assert not SearchQuery.objects.exists()


def test_the_api_refuses_a_text_beside_an_image_too(api_token, search_index):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token}")
    response = client.post(
        "/api/v1/search/image",
        {"image": upload(a_png(search_index)), "text": "school bus"},
        format="multipart",
    )
    assert response.status_code == 400
    assert str(TEXT_AND_IMAGE) in response.json()["error"]["message"]
    assert not SearchQuery.objects.exists()


def test_the_search_page_states_the_rule(auth_client, search_index):
    html = auth_client.get(reverse("search:home")).content.decode()
    assert f'<p id="text-and-image-note" class="note" hidden>{TEXT_AND_IMAGE}</p>' in html


# --- the class picker ------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["lemon", "  LEMON ", LEMON])
def test_the_class_is_taken_by_its_name_in_any_case_or_by_its_wnid(
    auth_client, user, search_index, typed
):
    search(auth_client, text="anything", class_filter=typed, top_k=10)
    query = SearchQuery.objects.get(user=user)
    assert query.filters == {"class": LEMON}
    assert set(query.results.values_list("image__image_class__wnid", flat=True)) == {LEMON}


def test_an_unknown_class_is_a_form_error(auth_client, search_index):
    response = search(auth_client, text="anything", class_filter="unicorn")
    assert response.status_code == 400
    assert "There is no class called “unicorn”." in response.content.decode()
    assert not SearchQuery.objects.exists()


def test_a_filtered_search_names_the_class_not_its_wnid(auth_client, user, search_index):
    search(auth_client, text="anything", class_filter="lemon", top_k=3)
    html = page_of(auth_client, SearchQuery.objects.get(user=user))
    summary = re.search(r'<p class="results-summary">(.*?)</p>', html).group(1)
    assert summary == "3 results in the class <strong>lemon</strong>."


def test_two_classes_of_one_name_are_told_apart_by_wnid():
    from search.catalog.choices import class_options
    from search.catalog.models import ImageClass

    classes = [
        ImageClass(wnid="n1", name="crane"),
        ImageClass(wnid="n2", name="Crane"),
        ImageClass(wnid="n3", name="lemon"),
    ]
    options = class_options(classes)
    assert list(options) == [("crane (n1)", "n1"), ("Crane (n2)", "n2"), ("lemon", "n3")]
    assert (options.wnid_of("crane (N2)"), options.wnid_of("crane")) == ("n2", None)


# --- minimum similarity ----------------------------------------------------------------------


def test_min_similarity_in_percent_is_stored_as_cosine_and_kept_by_rerun(
    auth_client, user, search_index
):
    search(auth_client, text="lemon", top_k=10)
    scores = sorted(SearchQuery.objects.get().results.values_list("score", flat=True))
    percent = int(scores[len(scores) // 2] * 100)  # about half of them pass
    expected = sum(score >= percent / 100 for score in scores)
    assert 0 < expected <= len(scores)

    search(auth_client, text="lemon", top_k=10, min_similarity=percent)
    cut = SearchQuery.objects.filter(user=user).order_by("-pk").first()
    assert cut.filters == {"min_similarity": percent / 100}
    assert cut.results.count() == expected
    html = page_of(auth_client, cut)
    assert f"at least {percent}% similar." in html

    response = auth_client.post(reverse("search:query-rerun", args=[cut.pk]))
    again = SearchQuery.objects.filter(user=user).order_by("-pk").first()
    assert response["Location"] == reverse("search:query", args=[again.pk])
    assert again.filters == cut.filters
    assert again.results.count() == expected


def test_a_cutoff_nothing_passes_says_what_to_do(auth_client, user, search_index):
    search(auth_client, text="lemon", top_k=5, min_similarity=100)
    html = page_of(auth_client, SearchQuery.objects.get(user=user))
    assert "No results at least 100% similar: lower the minimum similarity" in html


@pytest.mark.parametrize("bad", ["101", "-1", "lots"])
def test_a_min_similarity_outside_0_to_100_is_a_form_error(auth_client, search_index, bad):
    response = search(auth_client, text="lemon", min_similarity=bad)
    assert response.status_code == 400
    assert "Minimum similarity (%):" in response.content.decode()
    assert not SearchQuery.objects.exists()


def test_the_api_takes_min_similarity_as_cosine(api_token, search_index):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token}")
    everything = client.post("/api/v1/search/text", {"text": "reel", "top_k": 10}, format="json")
    scores = [r["score"] for r in everything.json()["results"]]
    cutoff = (scores[3] + scores[4]) / 2
    response = client.post(
        "/api/v1/search/text",
        {"text": "reel", "top_k": 10, "min_similarity": cutoff},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["filters"] == {"min_similarity": cutoff}
    assert [r["score"] for r in body["results"]] == scores[:4]
    refused = client.post(
        "/api/v1/search/text", {"text": "reel", "min_similarity": 2}, format="json"
    )
    assert refused.status_code == 400


# --- what a result card says -----------------------------------------------------------------


def test_a_result_shows_its_class_a_percentage_and_details(
    auth_client, user, search_index, clip_settings
):
    search(auth_client, text="lemon", top_k=1)
    query = SearchQuery.objects.get(user=user)
    top = query.results.get(rank=1)
    html = page_of(auth_client, query)
    card = html[html.index('id="result-1"') :]
    card = card[: card.index("</li>")]
    percent = round(top.score * 100)
    assert f"</span> {top.image.image_class.name}</strong>" in card
    assert f"{percent}% similar" in card
    assert f'<meter min="0" max="1" value="{top.score:.4f}"' in card
    assert f"<dd>{top.image.image_class.wnid}</dd>" in card.split("<details")[1]
    assert f"{top.score:.4f} (cosine similarity; shown as {percent}%)" in card
    # the result opens the image page, in this query's context
    assert f'href="{reverse("search:image", args=[top.image_id])}?q={query.pk}"' in card
    # the model by its name, never its path on the server
    assert "Model tiny-clip · " in html
    assert str(clip_settings.TINYRAG_CLIP_MODEL) not in html


# --- paging ----------------------------------------------------------------------------------


@pytest.fixture
def pages_of_four(monkeypatch):
    monkeypatch.setattr(selectors, "RESULTS_PAGE_SIZE", 4)


def test_results_come_a_page_at_a_time_with_load_more(
    auth_client, user, search_index, pages_of_four
):
    response = search(auth_client, htmx=True, text="lemon", top_k=10)
    query = SearchQuery.objects.get(user=user)
    first = response.content.decode()
    assert ranks_in(first) == [1, 2, 3, 4]
    url = reverse("search:query", args=[query.pk])
    assert f'href="{url}?page=2#result-5"' in first  # a plain link without JavaScript
    assert f'hx-get="{url}?page=2"' in first
    assert "Showing 4 of 10 results." in first

    # HTMX: only the next page's cards, and the next button
    more = auth_client.get(url, {"page": 2}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in more
    assert ranks_in(more) == [5, 6, 7, 8]
    assert f'hx-get="{url}?page=3"' in more
    last = auth_client.get(url, {"page": 3}, HTTP_HX_REQUEST="true").content.decode()
    assert ranks_in(last) == [9, 10]
    assert 'id="load-more"' not in last

    # without JavaScript: every page up to the one asked for
    assert ranks_in(page_of(auth_client, query, page=2)) == list(range(1, 9))
    assert ranks_in(page_of(auth_client, query, page=99)) == list(range(1, 11))
    assert ranks_in(page_of(auth_client, query, page="x")) == [1, 2, 3, 4]
    assert ranks_in(page_of(auth_client, query, page="²")) == [1, 2, 3, 4]  # isdigit, not int


def test_a_description_on_a_later_page_shows_once_when_load_more_appends_it(
    auth_client, user, search_index, pages_of_four, settings
):
    from search.descriptions.services import request_description

    settings.TINYRAG_VLM_BACKEND = "openai"  # enabled; queued, nothing generated here
    search(auth_client, text="lemon", top_k=10)
    query = SearchQuery.objects.get(user=user)
    sixth = query.results.get(rank=6)
    description = request_description(query=query, image_id=sixth.image_id)
    card = f'id="description-{description.pk}"'
    url = reverse("search:query", args=[query.pk])

    first = auth_client.get(url, HTTP_HX_REQUEST="true").content.decode()  # page 1, rank 6 not
    more = auth_client.get(url, {"page": 2}, HTTP_HX_REQUEST="true").content.decode()
    assert first.count(card) == 1  # listed above the results
    assert more.count(card) == 0  # so the appended page 2 does not repeat it
    # without JavaScript pages 1-2 are one page: the card sits on its result, once
    through = auth_client.get(url, {"page": 2}).content.decode()
    assert through.count(card) == 1
    assert through.index(card) > through.index('id="result-6"')


def test_an_htmx_history_restore_gets_the_whole_page(
    auth_client, user, search_index, pages_of_four
):
    search(auth_client, text="lemon", top_k=10)
    url = reverse("search:query", args=[SearchQuery.objects.get(user=user).pk])
    html = auth_client.get(
        url, {"page": 2}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    ).content.decode()
    assert "<html" in html
    assert ranks_in(html) == list(range(1, 9))


# --- the model-loading state -----------------------------------------------------------------


def test_the_indicator_says_the_model_is_loading_until_it_is(auth_client, search_index):
    from search.ml.registry import registry
    from search.queries.retrieval import query_models_loaded

    registry.clear()  # a process that has not searched yet
    assert query_models_loaded() is False
    html = auth_client.get(reverse("search:home")).content.decode()
    assert 'class="htmx-indicator searching model-cold"' in html
    assert "Loading the search model: the first search takes a few seconds…" in html

    search(auth_client, text="lemon")
    assert query_models_loaded() is True
    html = auth_client.get(reverse("search:home")).content.decode()
    assert 'class="htmx-indicator searching"' in html
