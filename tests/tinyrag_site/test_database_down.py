"""A database that goes away: pages and API answer 503 cleanly, then recover by themselves.

The outage is real, not mocked: the connection is pointed at a database that cannot be
reached (a SQLite file in a folder that does not exist; a PostgreSQL port nobody listens on),
exactly what Django sees while PostgreSQL restarts. `benchmarks/fault_drills.py` does the same
with a real PostgreSQL restart under load.
"""

from __future__ import annotations

import contextlib

import pytest
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.fixtures.http import unused_port

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def database_down():
    """Point the connection at an unreachable database; the live connection is set aside,
    not closed (closing SQLite's in-memory test database would destroy it)."""
    saved_settings, saved_connection = dict(connection.settings_dict), connection.connection
    connection.connection = None
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-tinyrag-dir/db.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(unused_port()))
    try:
        yield
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(saved_settings)
        connection.connection = saved_connection


@pytest.fixture
def clients(user):
    session = Client(raise_request_exception=False)
    session.force_login(user)
    token = Token.objects.create(user=user).key
    api = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")
    return session, api


def test_pages_and_api_answer_503_while_the_database_is_down_then_recover(clients):
    session, api = clients
    assert session.get("/history/").status_code == 200
    assert api.get("/api/v1/queries/").status_code == 200

    with database_down():
        page = session.get("/history/")
        assert page.status_code == 503
        assert page["Retry-After"] == "5"
        assert b"database is unavailable" in page.content
        response = api.get("/api/v1/queries/")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert Client().get("/healthz").status_code == 200  # the process itself is fine
        ready = Client().get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready"}  # why: manage.py doctor, or staff

    # back up: the same clients go on, nothing restarted
    assert session.get("/history/").status_code == 200
    assert api.get("/api/v1/queries/").status_code == 200


def test_other_server_errors_stay_500(clients, monkeypatch):
    from search.queries import history_views as views

    def broken(*args, **kwargs):
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(views, "query_history", broken)
    session, _ = clients
    response = session.get("/history/")
    assert response.status_code == 500
    assert "Retry-After" not in response


def test_a_schema_error_with_the_database_up_is_a_500_not_an_outage(clients, monkeypatch):
    from django.db import OperationalError

    from search.queries import history_views as views

    def missing_table(*args, **kwargs):
        raise OperationalError("no such table: search_searchquery")  # a forgotten migrate

    monkeypatch.setattr(views, "query_history", missing_table)
    session, _ = clients
    response = session.get("/history/")
    assert response.status_code == 500
    assert "Retry-After" not in response


def test_pages_and_api_answer_503_while_the_shared_cache_is_down(clients, settings):
    """Redis for many machines (TINYRAG_CACHE_URL=redis://...), not answering: the limits
    that count in it cannot, and the client is told to come back, not shown a crash."""
    session, api = clients
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{unused_port()}/0",
        }
    }
    page = session.post("/search/", {"text": "lemon", "top_k": 3})
    assert page.status_code == 503
    assert "The shared cache is unavailable" in page.content.decode()
    assert page["Retry-After"] == "5"
    response = api.get("/api/v1/queries/")
    assert response.status_code == 503
    assert response.json()["error"] == {
        "code": "unavailable",
        "message": "The shared cache is unavailable; try again in a few seconds.",
    }
