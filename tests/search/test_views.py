"""Search pages: HTMX partials and no-JS fallbacks, uploads, history ownership, image views."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image as PILImage

from search.catalog.models import Image
from search.queries.models import SearchQuery

pytestmark = pytest.mark.django_db


def png_of(path) -> bytes:
    buf = io.BytesIO()
    PILImage.open(path).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def upload(data: bytes, name="query.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/png")


def search(client, htmx=False, **data):
    payload = {"text": "", "top_k": 5, "class_filter": "", **data}
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse("search:run"), payload, **headers)


def test_search_page_shows_the_form_and_the_index(auth_client, search_index):
    html = auth_client.get(reverse("search:home")).content.decode()
    assert 'id="search-form"' in html
    assert "Searching 20 images with tiny-clip." in html
    # the picker offers names, with the other language's beside them
    assert '<option value="Egyptian cat" label="kucing mesir"></option>' in html
    assert 'list="class-options"' in html
    assert "autofocus" in html.split('id="id_text"')[0].rsplit("<input", 1)[1]


def test_search_page_without_index_says_what_to_run(auth_client, settings, tmp_path):
    from search.index.service import clear_index_services

    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    html = auth_client.get(reverse("search:home")).content.decode()
    # the first missing step (search.ops.health), not a command that fails as typed
    assert "Search is not ready yet: no images have been imported yet." in html
    assert 'id="search-form"' not in html


def test_text_search_without_js_saves_and_redirects_to_the_stored_results(
    auth_client, user, search_index
):
    response = search(auth_client, text="lemon")
    query = SearchQuery.objects.get(user=user)
    assert response.status_code == 302
    assert response["Location"] == reverse("search:query", args=[query.pk])
    assert (query.kind, query.text, query.top_k, query.index_name) == ("text", "lemon", 5, "tiny")
    assert query.results.count() == 5
    html = auth_client.get(response["Location"]).content.decode()
    ranks = [
        html.index(f'<span class="rank">#{r.rank}</span>') for r in query.results.order_by("rank")
    ]
    assert ranks == sorted(ranks)


def test_text_search_with_htmx_returns_the_results_partial(auth_client, user, search_index):
    response = search(auth_client, htmx=True, text="a red cat")
    html = response.content.decode()
    query = SearchQuery.objects.get(user=user)
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="results"')
    assert "<html" not in html
    assert response["HX-Push-Url"] == reverse("search:query", args=[query.pk])
    assert html.count('class="result"') == 5


def test_results_match_the_index_computed_independently(
    auth_client, user, search_index, clip_settings
):
    from search.ml.registry import get_clip_embedder

    search(auth_client, text="lemon")
    folder = clip_settings.TINYRAG_INDEX_DIR / "tiny"
    vectors, ids = np.load(folder / "embeddings.npy"), np.load(folder / "ids.npy")
    query_vector = get_clip_embedder().embed_texts(["a photo of a lemon."])[0]
    expected = [int(i) for i in ids[np.argsort(-(vectors @ query_vector))[:5]]]
    stored = list(
        SearchQuery.objects.get(user=user)
        .results.order_by("rank")
        .values_list("image_id", flat=True)
    )
    assert stored == expected


def test_class_filter_keeps_only_that_class(auth_client, user, search_index):
    search(auth_client, text="anything", class_filter="n04067472", top_k=10)
    query = SearchQuery.objects.get(user=user)
    classes = set(query.results.values_list("image__image_class__wnid", flat=True))
    assert classes == {"n04067472"}
    assert query.results.count() == 5  # all the class's train images, fewer than k
    assert query.filters == {"class": "n04067472"}


def test_image_upload_finds_the_same_image_first(auth_client, user, search_index):
    target = Image.objects.filter(split="train").order_by("id")[6]
    response = search(auth_client, image=upload(png_of(search_index / target.path)))
    query = SearchQuery.objects.get(user=user)
    assert response.status_code == 302
    assert query.kind == "image"
    assert query.results.get(rank=1).image == target
    assert query.uploaded_image.name.startswith(f"uploads/{user.pk}/")
    served = auth_client.get(reverse("search:query-upload", args=[query.pk]))
    assert b"".join(served.streaming_content) == png_of(search_index / target.path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The submitted file is empty."),
        (b"MZ\x90\x00 definitely not an image", "not a JPEG, PNG, WebP, GIF or BMP image"),
    ],
)
def test_bad_upload_is_a_form_error_not_a_500(auth_client, search_index, data, message):
    response = search(auth_client, image=upload(data, "x.png"))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert SearchQuery.objects.count() == 0


def test_truncated_upload_is_a_clear_error_in_the_htmx_partial(auth_client, search_index):
    path = search_index / Image.objects.filter(split="train").first().path
    data = path.read_bytes()[:400]
    response = search(auth_client, htmx=True, image=upload(data, "t.jpg"))
    assert response.status_code == 200
    assert "truncated" in response.content.decode()


def test_two_users_uploads_never_share_a_path(client, user, other_user, search_index):
    data = png_of(search_index / Image.objects.first().path)
    for who in (user, other_user):
        client.force_login(who)
        search(client, image=upload(data))
    first, second = (
        SearchQuery.objects.get(user=u).uploaded_image.name for u in (user, other_user)
    )
    assert first != second
    assert first.startswith(f"uploads/{user.pk}/")
    assert second.startswith(f"uploads/{other_user.pk}/")


def test_more_like_this_excludes_the_source(auth_client, user, search_index):
    source = Image.objects.filter(split="train").order_by("id")[2]
    response = auth_client.post(reverse("search:similar", args=[source.pk]))
    query = SearchQuery.objects.get(user=user)
    assert response.status_code == 302
    assert (query.kind, query.source_image) == ("similar", source)
    assert source.pk not in query.results.values_list("image_id", flat=True)
    assert query.results.count() == query.top_k


def test_other_users_query_is_404_everywhere(client, user, other_user, search_index):
    client.force_login(other_user)
    search(client, text="private")
    theirs = SearchQuery.objects.get(user=other_user)
    client.force_login(user)
    assert client.get(reverse("search:query", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("search:query-upload", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("search:query-rerun", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("search:query-delete", args=[theirs.pk])).status_code == 404
    client.post(reverse("search:history-delete"))
    assert SearchQuery.objects.filter(pk=theirs.pk).exists()


def test_rerun_makes_a_new_entry_with_the_same_parameters(auth_client, user, search_index):
    search(auth_client, text="lemon", top_k=3, class_filter="n07749582")
    first = SearchQuery.objects.get(user=user)
    response = auth_client.post(reverse("search:query-rerun", args=[first.pk]))
    second = SearchQuery.objects.exclude(pk=first.pk).get(user=user)
    assert response["Location"] == reverse("search:query", args=[second.pk])
    assert (second.text, second.top_k, second.filters) == ("lemon", 3, {"class": "n07749582"})
    assert list(second.results.values_list("image_id", flat=True)) == list(
        first.results.values_list("image_id", flat=True)
    )


def test_search_without_index_is_a_clear_503_page(auth_client, user, settings, tmp_path):
    """A user is told search is unavailable; the operator's detail is for staff only."""
    from search.index.service import clear_index_services

    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    response = search(auth_client, text="cat")
    html = response.content.decode()
    assert response.status_code == 503
    assert "Search is not available right now." in html
    assert "build_index" not in html
    user.is_staff = True
    user.save()
    assert "Staff: " in search(auth_client, text="cat").content.decode()


def test_more_like_this_of_a_missing_image_is_a_404(auth_client, user, search_index):
    missing = Image.objects.order_by("-pk").first().pk + 1
    response = auth_client.post(reverse("search:similar", args=[missing]))
    assert response.status_code == 404
    assert not SearchQuery.objects.filter(user=user).exists()


def test_rerun_of_a_similar_query_whose_source_went_says_so_on_the_page(
    auth_client, user, search_index
):
    source = Image.objects.filter(split="train").order_by("id")[0]
    auth_client.post(reverse("search:similar", args=[source.pk]))
    query = SearchQuery.objects.get(user=user)
    (search_index / source.path).write_bytes(b"not an image any more")
    response = auth_client.post(reverse("search:query-rerun", args=[query.pk]), follow=True)
    assert response.redirect_chain == [(reverse("search:query", args=[query.pk]), 302)]
    assert f"The file of image {source.pk} cannot be read." in response.content.decode()
    assert SearchQuery.objects.filter(user=user).count() == 1  # nothing new saved


def test_describing_an_image_that_is_not_the_querys_says_so_on_the_page(
    auth_client, user, search_index, settings
):
    settings.TINYRAG_VLM_BACKEND = "openai"  # enabled; nothing is generated for a refusal
    search(auth_client, text="lemon", top_k=1)
    query = SearchQuery.objects.get(user=user)
    found = set(query.results.values_list("image_id", flat=True))
    other = Image.objects.exclude(pk__in=found).first()
    response = auth_client.post(
        reverse("search:describe", args=[query.pk]), {"image_id": other.pk}, follow=True
    )
    assert response.redirect_chain == [(reverse("search:query", args=[query.pk]), 302)]
    assert "not among this query" in response.content.decode()
    assert not query.descriptions.exists()


def test_an_operators_problem_reads_plainly_for_users_and_in_full_for_staff(
    auth_client, user, search_index, settings, tmp_path
):
    """More like this with the index gone: a 503 only the operator can fix. The user is told
    what they can do; staff read the error itself."""
    from search.index.service import clear_index_services

    source = Image.objects.filter(split="train").order_by("id")[0]
    settings.TINYRAG_INDEX_DIR = tmp_path  # nothing published there
    clear_index_services()
    url = reverse("search:similar", args=[source.pk])

    as_user = auth_client.post(url, follow=True).content.decode()
    assert "This is not available right now. Try again in a few minutes" in as_user
    assert "build_index" not in as_user

    user.is_staff = True
    user.save()
    as_staff = auth_client.post(url, follow=True).content.decode()
    assert "This is not available right now" not in as_staff
    assert "build_index" in as_staff  # the Unavailable error's own message names the fix


def test_describe_with_descriptions_off_says_so_without_the_setting_to_users(
    auth_client, user, search_index, settings
):
    search(auth_client, text="lemon", top_k=1)
    query = SearchQuery.objects.get(user=user)
    settings.TINYRAG_VLM_BACKEND = "none"
    headers = {"HTTP_HX_REQUEST": "true"}
    card = auth_client.post(reverse("search:describe", args=[query.pk]), {}, **headers)
    assert "Descriptions are turned off on this server." in card.content.decode()
    assert "TINYRAG_VLM_BACKEND" not in card.content.decode()
    user.is_staff = True
    user.save()
    card = auth_client.post(reverse("search:describe", args=[query.pk]), {}, **headers)
    assert "TINYRAG_VLM_BACKEND=none" in card.content.decode()
