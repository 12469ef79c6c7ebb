"""The REST API through the tiny CLIP and a small built index: every endpoint, every error.

Expected rankings come from numpy on the published embeddings.npy (not from FAISS, the service
or the database); expected metadata from the image files and the synthetic dataset's constants.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from search.catalog.models import Image
from search.ml.registry import get_clip_embedder
from search.queries.models import SearchQuery, SearchResult
from search.queries.services import text_search

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_state")]

API = "/api/v1"
LEMON = "n07749582"

ENDPOINTS = [
    ("post", f"{API}/search/text"),
    ("post", f"{API}/search/image"),
    ("get", f"{API}/queries/"),
    ("get", f"{API}/queries/1"),
    ("delete", f"{API}/queries/1"),
    ("post", f"{API}/queries/1/rerun"),
    ("get", f"{API}/images/1"),
    ("get", f"{API}/classes/"),
]

QUERY_KEYS = {
    "id", "kind", "text", "top_k", "filters", "encoder", "index_name", "index_built_at",
    "duration_ms", "created_at", "source_image_id", "uploaded_image_url", "results",
    "language", "language_chosen", "route", "embedded_text",
}  # fmt: skip
IMAGE_KEYS = {"id", "url", "thumbnail_url", "split", "width", "height", "dataset", "class"}


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def api(api_token) -> APIClient:
    return token_client(api_token)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return token_client(Token.objects.create(user=other_user).key)


def error_of(response, status: int, code: str | None = None) -> dict:
    """The response is `status` in the API's error format; returns its "error" object."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def expected_ranking(built, text: str, k: int, allowed: set[int] | None = None):
    """(id, score) best first, by brute force over the published vectors."""
    phrase = settings.TINYRAG_TEXT_PROMPT.format(query=text)
    query = get_clip_embedder().embed_texts([phrase])[0]
    scores = built.vectors @ query
    ranked = [
        (int(built.ids[i]), float(scores[i]))
        for i in np.argsort(-scores, kind="stable")
        if allowed is None or int(built.ids[i]) in allowed
    ]
    return ranked[:k]


def train_image(position: int = 7) -> Image:
    return Image.objects.filter(split="train", mode="RGB").order_by("id")[position]


def search_text(client, **data):
    return client.post(f"{API}/search/text", data, format="json")


def upload(client, name: str, data: bytes, **fields):
    payload = {"image": SimpleUploadedFile(name, data), **fields}
    return client.post(f"{API}/search/image", payload, format="multipart")


def png_of(path) -> bytes:
    buffer = io.BytesIO()
    with PILImage.open(path) as img:
        img.save(buffer, "PNG")
    return buffer.getvalue()


# --- authentication and throttling --------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_every_endpoint_requires_credentials(method, url):
    response = getattr(APIClient(), method)(url)
    error_of(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_an_unknown_token_is_refused(user):
    error_of(token_client("0" * 40).get(f"{API}/queries/"), 401, "authentication_failed")


def test_token_authentication_works(api):
    response = api.get(f"{API}/queries/")
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_session_authentication_works(auth_client, index_built):
    assert auth_client.get(f"{API}/queries/").status_code == 200
    response = auth_client.post(
        f"{API}/search/text", {"text": "a cat"}, content_type="application/json"
    )
    assert response.status_code == 201
    assert SearchQuery.objects.get().user.username == "alice"


def test_a_session_write_without_csrf_token_is_403(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    error = error_of(search_text(client, text="a cat"), 403, "permission_denied")
    assert "CSRF" in error["message"]
    assert not SearchQuery.objects.exists()


def test_requests_over_the_rate_are_throttled_per_user(api, other_api, api_rate):
    api_rate("3/minute")
    assert [api.get(f"{API}/queries/").status_code for _ in range(3)] == [200, 200, 200]
    response = api.get(f"{API}/queries/")
    error = error_of(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in error["message"]
    assert other_api.get(f"{API}/queries/").status_code == 200


@pytest.mark.parametrize("tight", ["TINYRAG_API_RATE", "TINYRAG_SEARCH_RATE"])
def test_an_api_search_counts_against_the_api_rate_and_the_search_rate(api, settings, tight):
    settings.TINYRAG_API_RATE = settings.TINYRAG_SEARCH_RATE = "100/minute"
    setattr(settings, tight, "2/minute")
    # counted before the search runs (here none can: there is no index, a 503)
    statuses = [search_text(api, text="a cat").status_code for _ in range(3)]
    assert 429 not in statuses[:2]
    assert statuses[2] == 429


def test_api_searches_spend_the_same_api_rate_as_other_api_requests(api, settings):
    settings.TINYRAG_API_RATE, settings.TINYRAG_SEARCH_RATE = "3/minute", "100/minute"
    assert search_text(api, text="a cat").status_code != 429
    assert search_text(api, text="a dog").status_code != 429
    assert api.get(f"{API}/queries/").status_code == 200
    error_of(api.get(f"{API}/queries/"), 429, "throttled")


# --- text search --------------------------------------------------------------------------


def test_text_search_ranks_like_brute_force_over_the_index(api, index_built, user):
    response = search_text(api, text="a  yellow   lemon", top_k=5)
    assert response.status_code == 201
    body = response.json()
    expected = expected_ranking(index_built, "yellow lemon", k=5)  # its article stripped
    assert [r["image"]["id"] for r in body["results"]] == [i for i, _ in expected]
    np.testing.assert_allclose(
        [r["score"] for r in body["results"]], [s for _, s in expected], atol=1e-4
    )
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    saved = SearchQuery.objects.get(pk=body["id"])
    assert (saved.user, saved.kind, saved.text, saved.top_k) == (user, "text", "a yellow lemon", 5)
    assert saved.results.count() == 5


def test_text_search_response_shape(api, index_built, clip_settings):
    body = search_text(api, text="a cat").json()
    assert set(body) == QUERY_KEYS
    assert body["kind"] == "text"
    assert body["text"] == "a cat"
    assert body["top_k"] == 10  # TINYRAG_TOP_K_DEFAULT
    assert len(body["results"]) == 10
    assert body["filters"] == {}
    assert body["encoder"] == Path(clip_settings.TINYRAG_CLIP_MODEL).name  # a directory: its name
    assert body["index_name"] == "tiny"
    assert body["index_built_at"] is not None
    assert body["duration_ms"] >= 0
    assert body["source_image_id"] is None
    assert body["uploaded_image_url"] is None
    assert (body["language"], body["language_chosen"]) == ("en", False)
    assert (body["route"], body["embedded_text"]) == ("clip", "cat")
    image = body["results"][0]["image"]
    assert set(image) == IMAGE_KEYS
    row = Image.objects.get(pk=image["id"])
    wnid = row.path.split("/")[1]  # train/<wnid>/<file>
    assert image["url"] == f"http://testserver/images/{row.pk}/file/"
    assert image["thumbnail_url"] == f"http://testserver/images/{row.pk}/thumb/"
    assert (image["split"], image["width"], image["height"]) == ("train", 64, 64)
    assert image["dataset"] == "tiny-imagenet-200"
    assert image["class"]["wnid"] == wnid


def test_top_k_is_honoured(api, index_built):
    for k in (1, 3, 20):
        assert len(search_text(api, text="a reel", top_k=k).json()["results"]) == k
    # more than the index holds: every indexed image once
    results = search_text(api, text="a reel", top_k=100).json()["results"]
    assert sorted(r["image"]["id"] for r in results) == sorted(map(int, index_built.ids))


def test_class_filter_returns_only_that_class(api, index_built):
    lemons = set(
        Image.objects.filter(split="train", image_class__wnid=LEMON).values_list("id", flat=True)
    )
    response = search_text(api, text="a dog", top_k=10, class_filter=LEMON)
    assert response.status_code == 201
    body = response.json()
    assert body["filters"] == {"class": LEMON}
    expected = expected_ranking(index_built, "a dog", k=10, allowed=lemons)
    assert len(expected) == 5
    assert [r["image"]["id"] for r in body["results"]] == [i for i, _ in expected]
    assert {r["image"]["class"]["wnid"] for r in body["results"]} == {LEMON}


def test_an_unknown_class_filter_is_400(api, index_built):
    error = error_of(search_text(api, text="a dog", class_filter="n99999999"), 400, "invalid")
    assert "n99999999" in error["message"]
    assert not SearchQuery.objects.exists()


@pytest.mark.parametrize("top_k", [0, 101, -1, "many"])
def test_top_k_out_of_range_is_400_with_fields(api, index_built, top_k):
    error = error_of(search_text(api, text="a cat", top_k=top_k), 400, "invalid")
    assert set(error["fields"]) == {"top_k"}
    assert not SearchQuery.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [({}, "text"), ({"text": ""}, "text"), ({"text": " \t\n"}, "text"),
     ({"text": "x" * 501}, "text"), ({"text": "a\x00b"}, "text"),
     ({"text": "a cat", "class_filter": ""}, "class_filter")],
)  # fmt: skip
def test_invalid_text_search_input_is_400_with_fields(api, index_built, data, field):
    error = error_of(search_text(api, **data), 400, "invalid")
    assert set(error["fields"]) == {field}


def test_malformed_json_is_400(api):
    response = api.post(f"{API}/search/text", "{not json", content_type="application/json")
    error_of(response, 400, "parse_error")


def test_a_body_over_the_request_limit_is_400(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    error = error_of(search_text(api, text="a cat " * 30), 400, "invalid")
    assert "too large" in error["message"]


def test_text_search_reads_the_language_given_or_detects_it(api, index_built, clip_settings):
    detected = search_text(api, text="cari lemon kuning").json()
    assert (detected["language"], detected["language_chosen"]) == ("id", False)
    # no multilingual encoder in these settings: CLIP's own tower answers, and says so
    assert (detected["route"], detected["embedded_text"]) == ("clip", "lemon kuning")
    chosen = search_text(api, text="cari lemon kuning", language="en").json()
    assert (chosen["language"], chosen["language_chosen"]) == ("en", True)
    assert search_text(api, text="lemon", language="auto").json()["language_chosen"] is False
    assert search_text(api, text="lemon", language="").json()["language_chosen"] is False
    other = search_text(api, text="schwarze Katze", language="other").json()
    assert (other["language"], other["language_chosen"]) == ("de", True)
    saved = SearchQuery.objects.get(pk=chosen["id"])
    assert (saved.language, saved.language_chosen, saved.route) == ("en", True, "clip")


def test_text_search_multilingual_route(api, index_built, multilingual_settings):
    body = search_text(api, text="cari kucing mesir").json()
    assert (body["language"], body["route"], body["embedded_text"]) == (
        "id",
        "multilingual",
        "kucing mesir",
    )
    assert body["encoder"] == Path(multilingual_settings.TINYRAG_TEXT_MODEL).name


@pytest.mark.parametrize("language", ["klingon", "xx", "EN", "id-ID", 5])
def test_an_unknown_language_is_400_naming_the_field(api, index_built, language):
    error = error_of(search_text(api, text="kucing", language=language), 400, "invalid")
    assert set(error["fields"]) == {"language"}
    assert error["fields"]["language"].startswith(f'Unknown query language "{language}": use')
    assert not SearchQuery.objects.exists()


def test_text_search_takes_json_only(api):
    response = api.post(f"{API}/search/text", {"text": "a cat"}, format="multipart")
    error_of(response, 415, "unsupported_media_type")


# --- image search -------------------------------------------------------------------------


def test_uploaded_train_jpeg_finds_itself_first(api, index_built, user):
    target = train_image()
    data = (index_built.root / target.path).read_bytes()
    response = upload(api, "query.JPEG", data, top_k=3)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "image"
    assert body["text"] == ""
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    assert body["results"][0]["image"]["id"] == target.pk
    assert body["results"][0]["score"] > 0.99
    assert body["uploaded_image_url"] == f"http://testserver/history/{body['id']}/upload/"
    saved = SearchQuery.objects.get(pk=body["id"])
    assert saved.user == user
    # stored re-encoded (tests/search/test_uploads.py): the same picture, not the same bytes
    assert saved.uploaded_image.name.endswith(".jpg")
    with saved.uploaded_image.open("rb") as f, PILImage.open(f) as stored:
        stored_pixels = np.asarray(stored.convert("RGB"), dtype=np.int16)
    with PILImage.open(io.BytesIO(data)) as sent:
        sent_pixels = np.asarray(sent.convert("RGB"), dtype=np.int16)
    assert stored_pixels.shape == sent_pixels.shape
    # a JPEG re-encode moves pixels by a few levels; another picture would by ~85 on average
    assert np.abs(stored_pixels - sent_pixels).mean() < 10


def test_uploaded_png_of_a_train_image_finds_it_first(api, index_built):
    target = train_image(12)
    response = upload(api, "query.png", png_of(index_built.root / target.path), top_k=2)
    assert response.status_code == 201, response.content
    assert response.json()["results"][0]["image"]["id"] == target.pk
    assert SearchQuery.objects.get().uploaded_image.name.endswith(".png")


def test_image_search_with_class_filter(api, index_built):
    target = train_image()
    data = (index_built.root / target.path).read_bytes()
    wnid = target.image_class.wnid
    other = "n04067472" if wnid != "n04067472" else LEMON
    body = upload(api, "q.jpg", data, top_k=10, class_filter=other).json()
    assert len(body["results"]) == 5
    assert {r["image"]["class"]["wnid"] for r in body["results"]} == {other}
    assert target.pk not in {r["image"]["id"] for r in body["results"]}


def _truncated_jpeg(built) -> bytes:
    data = (built.root / train_image().path).read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("name", "content", "field"),
    [
        ("notes.jpg", lambda built: b"these are words, not pixels\n" * 10, None),
        ("cut.jpg", _truncated_jpeg, None),
        ("empty.jpg", lambda built: b"", "image"),
    ],
    ids=["not-an-image", "truncated-jpeg", "zero-bytes"],
)
def test_bad_uploads_are_400(api, index_built, clip_settings, name, content, field):
    error = error_of(upload(api, name, content(index_built)), 400, "invalid")
    if field:
        assert set(error["fields"]) == {field}
    assert not SearchQuery.objects.exists()
    assert not list((clip_settings.MEDIA_ROOT).glob("**/*.*"))


def test_an_oversized_upload_is_400(api, index_built, clip_settings):
    data = (index_built.root / train_image().path).read_bytes()
    clip_settings.TINYRAG_UPLOAD_MAX_BYTES = len(data) - 1
    error = error_of(upload(api, "big.jpg", data), 400, "invalid")
    assert set(error["fields"]) == {"image"}
    assert "limit" in error["fields"]["image"]
    assert not SearchQuery.objects.exists()
    clip_settings.TINYRAG_UPLOAD_MAX_BYTES = len(data)
    assert upload(api, "big.jpg", data).status_code == 201


def test_image_search_needs_a_file(api, index_built):
    error = error_of(api.post(f"{API}/search/image", {"top_k": 3}), 400, "invalid")
    assert set(error["fields"]) == {"image"}
    response = api.post(f"{API}/search/image", {"image": "x"}, format="json")
    error_of(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("top_k", [0, 101])
def test_image_search_top_k_out_of_range_is_400(api, index_built, top_k):
    data = (index_built.root / train_image().path).read_bytes()
    error = error_of(upload(api, "q.jpg", data, top_k=top_k), 400, "invalid")
    assert set(error["fields"]) == {"top_k"}


# --- search not available -----------------------------------------------------------------


def test_no_index_is_503(api, dataset_imported):
    error = error_of(search_text(api, text="a cat"), 503, "unavailable")
    assert "build_index" in error["message"]
    data = (dataset_imported / train_image().path).read_bytes()
    error_of(upload(api, "q.jpg", data), 503, "unavailable")
    assert not SearchQuery.objects.exists()


def test_a_model_that_cannot_load_is_503(api, index_built, clip_settings, tmp_path):
    from search.ml.registry import registry

    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "no-such-model")
    registry.clear()
    error = error_of(search_text(api, text="a cat"), 503, "unavailable")
    assert "TINYRAG_CLIP_MODEL" in error["message"]


# --- history ------------------------------------------------------------------------------


def test_history_lists_own_queries_newest_first(api, index_built, user, other_user):
    text_search(user=other_user, text="not mine", top_k=2)
    first = search_text(api, text="a cat", top_k=3).json()["id"]
    second = search_text(api, text="a lemon", top_k=4).json()["id"]
    response = api.get(f"{API}/queries/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [q["id"] for q in body["results"]] == [second, first]
    assert [q["result_count"] for q in body["results"]] == [4, 3]
    for item in body["results"]:
        top = SearchResult.objects.get(query_id=item["id"], rank=1)
        assert item["top_result"]["rank"] == 1
        assert item["top_result"]["image"]["id"] == top.image_id
        assert item["top_result"]["score"] == pytest.approx(top.score)
        assert "results" not in item


def test_history_is_paginated_by_20(api, user):
    SearchQuery.objects.bulk_create(
        SearchQuery(user=user, kind="text", text=f"q{i}", top_k=1, encoder="m",
                    index_name="tiny", duration_ms=1.0)
        for i in range(21)
    )  # fmt: skip
    page1 = api.get(f"{API}/queries/").json()
    assert (page1["count"], len(page1["results"])) == (21, 20)
    assert page1["next"] == "http://testserver/api/v1/queries/?page=2"
    assert page1["results"][0]["top_result"] is None
    assert page1["results"][0]["result_count"] == 0
    page2 = api.get(page1["next"]).json()
    assert len(page2["results"]) == 1
    error_of(api.get(f"{API}/queries/?page=3"), 404, "not_found")
    error_of(api.get(f"{API}/queries/?page=abc"), 404, "not_found")


def test_query_detail_has_its_results(api, index_built):
    created = search_text(api, text="a dog", top_k=4).json()
    response = api.get(f"{API}/queries/{created['id']}")
    assert response.status_code == 200
    body = response.json()
    rows = SearchResult.objects.filter(query_id=created["id"]).order_by("rank")
    assert [(r["rank"], r["image"]["id"]) for r in body["results"]] == [
        (row.rank, row.image_id) for row in rows
    ]
    assert body == created


def test_delete_removes_the_query_and_its_upload(
    api, index_built, django_capture_on_commit_callbacks
):
    data = (index_built.root / train_image().path).read_bytes()
    created = upload(api, "q.jpg", data).json()
    stored = SearchQuery.objects.get(pk=created["id"]).uploaded_image.path
    assert Path(stored).is_file()
    with django_capture_on_commit_callbacks(execute=True):  # the file goes once it commits
        response = api.delete(f"{API}/queries/{created['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert not SearchQuery.objects.exists()
    assert not SearchResult.objects.exists()
    assert not (settings.MEDIA_ROOT / stored).exists()
    error_of(api.get(f"{API}/queries/{created['id']}"), 404, "not_found")
    error_of(api.delete(f"{API}/queries/{created['id']}"), 404, "not_found")


def test_rerun_is_a_new_query_with_the_same_input(api, index_built):
    created = search_text(api, text="a reel", top_k=3, class_filter=LEMON).json()
    response = api.post(f"{API}/queries/{created['id']}/rerun")
    assert response.status_code == 201
    again = response.json()
    assert again["id"] != created["id"]
    assert (again["text"], again["top_k"], again["filters"]) == ("a reel", 3, {"class": LEMON})
    assert [r["image"]["id"] for r in again["results"]] == [
        r["image"]["id"] for r in created["results"]
    ]
    assert SearchQuery.objects.count() == 2


def test_rerun_of_an_image_query_uses_the_stored_upload(api, index_built):
    target = train_image()
    created = upload(api, "q.jpg", (index_built.root / target.path).read_bytes()).json()
    again = api.post(f"{API}/queries/{created['id']}/rerun").json()
    assert again["kind"] == "image"
    assert again["results"][0]["image"]["id"] == target.pk


def test_rerun_of_a_similar_query_whose_source_file_went_is_a_400(api, user, index_built):
    """The query is there (not a 404): what rerunning it needs is not."""
    from search.queries.services import similar_search

    source = Image.objects.filter(split="train").order_by("id")[0]
    query = similar_search(user=user, image_id=source.pk)
    (index_built.root / source.path).write_bytes(b"not an image any more")
    error = error_of(api.post(f"{API}/queries/{query.pk}/rerun"), 400, "invalid")
    assert error["message"] == f"The file of image {source.pk} cannot be read."


def test_another_users_query_is_404_everywhere(api, other_api, index_built):
    theirs = search_text(other_api, text="a cat", top_k=2).json()["id"]
    url = f"{API}/queries/{theirs}"
    error_of(api.get(url), 404, "not_found")
    error_of(api.delete(url), 404, "not_found")
    error_of(api.post(f"{url}/rerun"), 404, "not_found")
    assert list(SearchQuery.objects.values_list("id", flat=True)) == [theirs]
    assert api.get(f"{API}/queries/").json()["count"] == 0


# --- collection ---------------------------------------------------------------------------


def test_image_detail_describes_the_file(api, dataset_imported):
    row = Image.objects.filter(split="train").order_by("id")[3]
    with PILImage.open(dataset_imported / row.path) as img:
        size, mode = img.size, img.mode
    response = api.get(f"{API}/images/{row.pk}")
    assert response.status_code == 200
    assert response.json() == {
        "id": row.pk,
        "url": f"http://testserver/images/{row.pk}/file/",
        "thumbnail_url": f"http://testserver/images/{row.pk}/thumb/",
        "split": "train",
        "width": size[0],
        "height": size[1],
        "mode": mode,
        "dataset": "tiny-imagenet-200",
        "class": {
            "wnid": row.path.split("/")[1],
            "name": row.image_class.name,
            "display_name": row.image_class.name,  # in the request's language: English here
        },
    }


def test_an_unlabelled_image_has_no_class(api, dataset_imported):
    row = Image.objects.filter(split="test").first()
    body = api.get(f"{API}/images/{row.pk}").json()
    assert (body["split"], body["class"]) == ("test", None)


def test_classes_with_image_counts(api, dataset_imported, synthetic_tinyimagenet):
    d = synthetic_tinyimagenet
    response = api.get(f"{API}/classes/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert [c["wnid"] for c in body["results"]] == sorted(d.wnids)
    per_class = d.train_per_class + d.val_per_class
    assert {c["image_count"] for c in body["results"]} == {per_class}
    lemon = next(c for c in body["results"] if c["wnid"] == LEMON)
    assert (lemon["name"], lemon["names"], lemon["dataset"]) == (
        "lemon",
        ["lemon"],
        "tiny-imagenet-200",
    )


# --- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/images/999999", "/queries/0", "/queries/abc", "/queries/99999999999999999999",
     "/queries/1/", "/nothing/here"],
)  # fmt: skip
def test_unknown_objects_and_urls_are_json_404(api, dataset_imported, path):
    error_of(api.get(f"{API}{path}"), 404, "not_found")


def test_a_session_post_to_an_unknown_url_is_json_404(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    error_of(client.post(f"{API}/queries/0/rerun"), 404, "not_found")


def test_undeclared_methods_are_405_with_allow(api):
    response = api.put(f"{API}/queries/1")
    error_of(response, 405, "method_not_allowed")
    assert {m.strip() for m in response["Allow"].split(",")} == {"GET", "DELETE", "HEAD", "OPTIONS"}
    response = api.get(f"{API}/search/text")
    error_of(response, 405, "method_not_allowed")
    assert {m.strip() for m in response["Allow"].split(",")} == {"POST", "OPTIONS"}
