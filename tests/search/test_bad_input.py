"""No input reaches a 500: each bad one is a 4xx with one clear line (JSON under /api/)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from search.queries import services as search_service
from search.queries.models import SearchQuery

pytestmark = pytest.mark.django_db

API = "/api/v1"
DEEP_JSON = "[" * 100_000  # 100 kB: deeper than Python's recursion limit


def text_query(user) -> SearchQuery:
    return SearchQuery.objects.create(
        user=user, kind="text", text="a cat", top_k=5, encoder="e", index_name="i", duration_ms=1
    )


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def assert_api_error(response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": code, "message": message}}


NESTED_TOO_DEEPLY = "JSON parse error - the document is nested too deeply."


@pytest.mark.parametrize("endpoint", ["search/text", "queries/{id}/descriptions"])
def test_deeply_nested_json_is_a_400(api, user, endpoint):
    url = f"{API}/{endpoint.format(id=text_query(user).pk)}"
    response = api.post(url, DEEP_JSON, content_type="application/json")
    assert_api_error(response, 400, "parse_error", NESTED_TOO_DEEPLY)


def test_deeply_nested_json_is_a_400_where_only_the_csrf_check_reads_it(user):
    """With a session, DRF's CSRF check parses the body of a POST, whatever the view reads."""
    query = text_query(user)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = "k" * 32
    response = client.post(
        f"{API}/queries/{query.pk}/rerun",
        DEEP_JSON,
        content_type="application/json",
        HTTP_X_CSRFTOKEN="k" * 32,
    )
    assert_api_error(response, 400, "parse_error", NESTED_TOO_DEEPLY)
    assert SearchQuery.objects.count() == 1  # nothing ran


def test_an_unexpected_api_error_is_a_json_500(api, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(search_service, "text_search", broken)
    api.raise_request_exception = False
    response = api.post(f"{API}/search/text", {"text": "a cat"}, format="json")
    assert_api_error(
        response,
        500,
        "server_error",
        "The server failed to answer this request; the error is logged.",
    )


def test_an_unexpected_page_error_is_still_an_html_500(
    auth_client, monkeypatch, settings, tmp_path
):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(search_service, "text_search", broken)
    settings.TINYRAG_INDEX_DIR = tmp_path
    auth_client.raise_request_exception = False
    response = auth_client.post(reverse("search:run"), {"text": "a cat", "top_k": 5})
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"image_id": "²"}, "image_id: Enter a whole number."),
        ({"image_id": "x"}, "image_id: Enter a whole number."),
        ({"image_id": "0"}, "image_id: Ensure this value is greater than or equal to 1."),
        (
            {"image_id": str(2**63)},
            "image_id: Ensure this value is less than or equal to 9223372036854775807.",
        ),
        (
            {"context": "everything"},
            "context: Select a valid choice. everything is not one of the available choices.",
        ),
    ],
)
def test_a_bad_describe_request_is_a_400_that_says_why(auth_client, user, data, line):
    query = text_query(user)
    response = auth_client.post(reverse("search:describe", args=[query.pk]), data)
    assert response.status_code == 400
    assert line in response.content.decode()  # one line, in the page that says it
    assert not query.descriptions.exists()


def test_a_describe_request_for_anothers_query_is_still_a_404(user, other_user):
    client = Client()
    client.force_login(other_user)
    response = client.post(
        reverse("search:describe", args=[text_query(user).pk]), {"image_id": "²"}
    )
    assert response.status_code == 404
