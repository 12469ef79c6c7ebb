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
    assert "Index tiny: 20 images" in html
    assert '<option value="n02124075">Egyptian cat (n02124075)</option>' in html


def test_search_page_without_index_says_what_to_run(auth_client, settings, tmp_path):
    from search.index.service import clear_index_services

    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    html = auth_client.get(reverse("search:home")).content.decode()
    assert "Search is not available yet." in html
    assert "python manage.py bootstrap" in html
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
    ranks = [html.index(f"<strong>#{r.rank} ") for r in query.results.order_by("rank")]
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


def test_history_lists_only_own_queries_newest_first(client, user, other_user, search_index):
    client.force_login(other_user)
    search(client, text="not yours")
    client.force_login(user)
    search(client, text="first")
    search(client, text="second")
    html = client.get(reverse("search:history")).content.decode()
    assert "not yours" not in html
    assert html.index("“second”") < html.index("“first”")


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


def test_delete_one_and_all_removes_uploads_too(
    auth_client, user, search_index, clip_settings, django_capture_on_commit_callbacks
):
    data = png_of(search_index / Image.objects.first().path)
    search(auth_client, image=upload(data))
    search(auth_client, image=upload(data))
    search(auth_client, text="x")
    first, second = SearchQuery.objects.filter(kind="image").order_by("pk")
    first_path, second_path = (
        clip_settings.MEDIA_ROOT / q.uploaded_image.name for q in (first, second)
    )
    assert first_path.is_file()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the delete commits
        response = auth_client.post(
            reverse("search:query-delete", args=[first.pk]), HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    assert response.content == b""
    assert not first_path.exists()
    assert second_path.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        auth_client.post(reverse("search:history-delete"))
    assert SearchQuery.objects.filter(user=user).count() == 0
    assert not second_path.exists()


def test_history_is_paginated(auth_client, user, search_index):
    from search.queries.models import SearchQuery as Q

    Q.objects.bulk_create(
        [
            Q(
                user=user,
                kind="text",
                text=f"q{i}",
                top_k=1,
                encoder="e",
                index_name="tiny",
                duration_ms=1.0,
            )
            for i in range(25)
        ]
    )
    first = auth_client.get(reverse("search:history")).content.decode()
    assert "Page 1 of 2" in first
    partial = auth_client.get(
        reverse("search:history"), {"page": 2}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert partial.lstrip().startswith('<div id="history">')
    assert partial.count('<tr id="query-') == 5


def test_dataset_image_and_thumbnail(auth_client, search_index):
    image = Image.objects.filter(split="val").first()
    response = auth_client.get(reverse("search:image", args=[image.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (search_index / image.path).read_bytes()
    assert "max-age=86400" in response["Cache-Control"]
    thumb = auth_client.get(reverse("search:image-thumb", args=[image.pk]))
    assert thumb["Content-Type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(thumb.content)).size == (64, 64)  # never upscaled


def test_a_large_image_is_shrunk_to_fit_the_thumbnail_side(tmp_path):
    from search.catalog.services import thumbnail_jpeg

    path = tmp_path / "wide.png"
    PILImage.new("RGBA", (640, 320), (10, 20, 30, 255)).save(path)
    thumb = PILImage.open(io.BytesIO(thumbnail_jpeg(path=path)))
    assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "RGB", (160, 80))  # 640 / 4


def test_image_views_need_login_and_known_ids(auth_client, search_index):
    from django.test import Client

    image = Image.objects.first()
    for name in ("search:image", "search:image-thumb"):
        assert Client().get(reverse(name, args=[image.pk])).status_code == 302
    assert auth_client.get(reverse("search:image", args=[999999])).status_code == 404
    assert auth_client.get("/images/../../etc/passwd/").status_code == 404


def test_image_row_pointing_outside_its_dataset_is_404(auth_client, search_index):
    image = Image.objects.first()
    Image.objects.filter(pk=image.pk).update(path="../../../../etc/hostname")
    assert auth_client.get(reverse("search:image", args=[image.pk])).status_code == 404


def test_profile_shows_and_regenerates_the_token(auth_client, user):
    from rest_framework.authtoken.models import Token

    html = auth_client.get(reverse("profile")).content.decode()
    old = Token.objects.get(user=user).key
    assert old in html
    auth_client.post(reverse("profile"))
    assert Token.objects.get(user=user).key != old


def test_search_without_index_is_a_clear_503_page(auth_client, settings, tmp_path):
    from search.index.service import clear_index_services

    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    response = search(auth_client, text="cat")
    assert response.status_code == 503
    assert "build_index" in response.content.decode()


def test_file_views_accept_an_api_token(search_index, user):
    from django.test import Client
    from rest_framework.authtoken.models import Token

    image = Image.objects.first()
    key = Token.objects.create(user=user).key
    url = reverse("search:image-thumb", args=[image.pk])
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert Client().get(url, HTTP_AUTHORIZATION="Token wrong").status_code == 302


def test_decompression_bomb_is_refused_before_decoding(auth_client, search_index):
    buf = io.BytesIO()
    PILImage.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 M pixels in a few kB
    assert len(buf.getvalue()) < 100_000
    response = search(auth_client, image=upload(buf.getvalue(), "bomb.png"))
    assert response.status_code == 400
    assert "the limit is 40,000,000 pixels" in response.content.decode()


def test_html_named_png_is_refused_and_a_polyglot_is_served_as_an_image(
    auth_client, user, search_index
):
    html = b"<html><script>alert(1)</script></html>"
    assert search(auth_client, image=upload(html, "x.png")).status_code == 400
    # a real JPEG with a script appended: a valid image, so accepted -- and never sniffed as HTML
    jpeg = (search_index / Image.objects.first().path).read_bytes()
    search(auth_client, image=upload(jpeg + html, "polyglot.jpg"))
    query = SearchQuery.objects.get(user=user)
    served = auth_client.get(reverse("search:query-upload", args=[query.pk]))
    assert served["Content-Type"] == "image/jpeg"
    assert served["X-Content-Type-Options"] == "nosniff"


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
