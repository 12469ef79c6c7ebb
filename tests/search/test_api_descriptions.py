"""API: POST /queries/{id}/descriptions -> 202; GET /descriptions/{id} -> status and text."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from search.descriptions.models import Description
from tests.fixtures.backends import run_queued_tasks
from tests.search.test_api import token_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(api_token, fresh_throttle_state):
    return token_client(api_token)


@pytest.fixture
def other_api(other_user):
    return token_client(Token.objects.create(user=other_user).key)


@pytest.fixture
def query_id(api, index_built, vlm_settings):
    vlm_settings.TINYRAG_VLM_MIN_NEW_TOKENS = 4
    response = api.post("/api/v1/search/text", {"text": "lemon", "top_k": 3}, format="json")
    assert response.status_code == 201
    return response.json()["id"]


def first_image(api, query_id) -> int:
    return api.get(f"/api/v1/queries/{query_id}").json()["results"][0]["image"]["id"]


def test_describe_queues_then_the_worker_fills_the_text(api, query_id):
    image_id = first_image(api, query_id)
    response = api.post(
        f"/api/v1/queries/{query_id}/descriptions", {"image_id": image_id}, format="json"
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["text"], body["image"]["id"]) == ("queued", "", image_id)
    assert body["context_mode"] == "retrieved"
    assert image_id not in [n["image_id"] for n in body["context"]["neighbours"]]

    run_queued_tasks()
    done = api.get(f"/api/v1/descriptions/{body['id']}").json()
    row = Description.objects.get(pk=body["id"])
    assert done["status"] == "done"
    assert done["text"] == row.text
    assert done["tokens"] >= 4


def test_identical_request_is_reused_and_regenerate_is_not(api, query_id):
    image_id = first_image(api, query_id)
    url = f"/api/v1/queries/{query_id}/descriptions"
    first = api.post(url, {"image_id": image_id}, format="json").json()
    run_queued_tasks()
    again = api.post(url, {"image_id": image_id}, format="json").json()
    assert (again["status"], again["reused_from"]) == ("done", first["id"])
    forced = api.post(url, {"image_id": image_id, "regenerate": True}, format="json").json()
    assert (forced["status"], forced["reused_from"]) == ("queued", None)


def test_bad_requests(api, query_id, other_user):
    url = f"/api/v1/queries/{query_id}/descriptions"
    no_upload = api.post(url, {}, format="json")
    assert no_upload.status_code == 404  # nothing to describe within this query
    assert "no uploaded image" in no_upload.json()["error"]["message"]
    stranger = api.post(url, {"image_id": 999999}, format="json")
    assert stranger.status_code == 404
    assert "not among this query's images" in stranger.json()["error"]["message"]
    bad_context = api.post(url, {"image_id": 1, "context": "labels"}, format="json")
    assert bad_context.status_code == 400
    assert "context" in bad_context.json()["error"]["fields"]
    assert api.get("/api/v1/descriptions/999999").status_code == 404


def test_another_users_query_and_description_are_404(api, query_id, other_api):
    image_id = first_image(api, query_id)
    mine = api.post(
        f"/api/v1/queries/{query_id}/descriptions", {"image_id": image_id}, format="json"
    ).json()
    theirs = other_api.post(
        f"/api/v1/queries/{query_id}/descriptions", {"image_id": image_id}, format="json"
    )
    assert theirs.status_code == 404
    assert other_api.get(f"/api/v1/descriptions/{mine['id']}").status_code == 404


def test_disabled_backend_answers_409(api, query_id, settings):
    settings.TINYRAG_VLM_BACKEND = "none"
    response = api.post(
        f"/api/v1/queries/{query_id}/descriptions",
        {"image_id": first_image(api, query_id)},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "disabled"


# --- the language it is written in -------------------------------------------------------------


def test_the_language_is_chosen_reported_and_part_of_reuse(api, query_id):
    image_id = first_image(api, query_id)
    url = f"/api/v1/queries/{query_id}/descriptions"
    english = api.post(url, {"image_id": image_id}, format="json").json()
    assert english["language"] == "en"  # no Accept-Language: English
    run_queued_tasks()

    indonesian = api.post(url, {"image_id": image_id, "language": "id"}, format="json")
    assert indonesian.status_code == 202
    body = indonesian.json()
    assert (body["language"], body["prompt_version"]) == ("id", "rag-id-v1")
    assert (body["status"], body["reused"]) == ("queued", False)  # not the English text
    assert Description.objects.get(pk=body["id"]).prompt.startswith("Jelaskan gambar ini")

    again = api.post(url, {"image_id": image_id, "language": "en"}, format="json").json()
    assert (again["status"], again["reused_from"], again["language"]) == (
        "done",
        english["id"],
        "en",
    )
    polled = api.get(f"/api/v1/descriptions/{body['id']}").json()
    assert polled["language"] == "id"


def test_the_default_language_is_the_requests(api, query_id):
    image_id = first_image(api, query_id)
    url = f"/api/v1/queries/{query_id}/descriptions"
    response = api.post(url, {"image_id": image_id}, format="json", HTTP_ACCEPT_LANGUAGE="id-ID")
    assert response.json()["language"] == "id"
    assert Description.objects.get().language == "id"


@pytest.mark.parametrize("language", ["fr", "", "ID ", 7, None])
def test_an_unknown_language_is_a_400_naming_the_field(api, query_id, language):
    url = f"/api/v1/queries/{query_id}/descriptions"
    response = api.post(
        url, {"image_id": first_image(api, query_id), "language": language}, format="json"
    )
    assert response.status_code == 400
    assert "language" in response.json()["error"]["fields"]
    assert not Description.objects.exists()
