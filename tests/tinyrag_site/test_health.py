"""/healthz, /readyz and `manage.py doctor`."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from search.index import clear_index_services

pytestmark = pytest.mark.django_db


def test_healthz_is_public_and_trivial():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_without_an_index_is_503_and_says_why(settings, tmp_path):
    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["tasks"]["ok"] is True
    assert body["checks"]["index"]["ok"] is False
    assert "build_index" in body["checks"]["index"]["detail"]


def test_readyz_ready_with_an_index(search_index):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["index"]["detail"].startswith("tiny: 20 vectors, flat")


def test_readyz_refuses_an_index_of_another_model(search_index, settings):
    settings.TINYRAG_CLIP_MODEL = "sentence-transformers/some-other-clip"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert "rebuild it" in response.json()["checks"]["index"]["detail"]


def test_corrupt_index_keeps_the_site_up(search_index, settings, auth_client):
    (settings.TINYRAG_INDEX_DIR / "tiny" / "index.faiss").write_bytes(b"garbage")
    clear_index_services()
    assert Client().get("/readyz").status_code == 503
    page = auth_client.get("/")
    assert page.status_code == 200
    assert "cannot be read" in page.content.decode()


def test_doctor_lists_every_check_and_fails_without_data(settings, tmp_path, capsys):
    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    with pytest.raises(CommandError, match="not healthy: index, dataset"):
        call_command("doctor")
    out = capsys.readouterr().out
    for name in ("database", "index", "tasks", "dataset", "descriptions"):
        assert name in out


def test_doctor_passes_on_a_working_install(search_index, capsys):
    call_command("doctor", "--load-models")
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "(dim 16)" in out
