"""/healthz, /readyz and `manage.py doctor`."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from search.index.service import clear_index_services, get_index_service

pytestmark = pytest.mark.django_db


def test_healthz_is_public_and_trivial():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_tells_anyone_ready_and_nothing_more(search_index, auth_client):
    for client in (Client(), auth_client):  # anonymous, and a user who is not staff
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"status": "ready"}


def test_readyz_tells_anyone_not_ready_and_not_why(settings, tmp_path, auth_client):
    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    for client in (Client(), auth_client):
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "not ready"}


def test_readyz_without_an_index_is_503_and_says_why_to_staff(settings, tmp_path, admin_client):
    settings.TINYRAG_INDEX_DIR = tmp_path
    clear_index_services()
    response = admin_client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["tasks"]["ok"] is True
    assert body["checks"]["index"]["ok"] is False
    assert "build_index" in body["checks"]["index"]["detail"]


def test_readyz_tells_staff_how_many_tasks_wait(admin_client, settings):
    from search.descriptions.tasks import generate_description

    generate_description.enqueue()
    generate_description.enqueue()
    tasks = admin_client.get("/readyz").json()["checks"]["tasks"]
    assert tasks == {"ok": True, "detail": "DatabaseBackend: 2 waiting"}

    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    tasks = admin_client.get("/readyz").json()["checks"]["tasks"]
    assert tasks == {"ok": True, "detail": "DummyBackend"}  # a broker's queue is its own


def test_readyz_ready_with_an_index(search_index, admin_client):
    response = admin_client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["index"]["detail"].startswith("tiny: 20 vectors, flat")


def test_readyz_refuses_an_index_of_another_model(search_index, settings, admin_client):
    settings.TINYRAG_CLIP_MODEL = "sentence-transformers/some-other-clip"
    response = admin_client.get("/readyz")
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


def test_warm_up_loads_the_index_and_models_before_the_first_request(search_index, caplog):
    from search.ml.registry import get_clip_embedder, registry
    from search.ops.health import warm_up

    clear_index_services()
    registry.clear()
    index_service = get_index_service()
    assert index_service._loaded is None
    assert not get_clip_embedder().loaded
    warm_up()
    assert index_service._loaded is not None
    assert get_clip_embedder().loaded
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_warm_up_without_an_index_logs_and_goes_on(clip_settings, tmp_path, caplog):
    from search.ops.health import warm_up

    clip_settings.TINYRAG_INDEX_DIR = tmp_path
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "no-such-model")
    clear_index_services()
    warm_up()  # a worker must start even so
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("warm-up: index not ready") for m in warnings), warnings
    assert any(m.startswith("warm-up: image model not ready") for m in warnings), warnings


def test_warm_up_loads_the_multilingual_encoder_only_where_queries_take_it(
    clip_settings, tmp_path, caplog
):
    """TINYRAG_TEXT_ROUTE=clip: no query takes TINYRAG_TEXT_MODEL, so setup_models never
    fetched it, and the warm-up does not try; on the multilingual route it does."""
    from search.ops.health import warm_up

    clip_settings.TINYRAG_INDEX_DIR = tmp_path
    clip_settings.TINYRAG_TEXT_MODEL = str(tmp_path / "never-downloaded")
    clip_settings.TINYRAG_TEXT_ROUTE = "clip"
    clear_index_services()
    warm_up()
    text_model = [r for r in caplog.records if "text model" in r.getMessage()]
    assert text_model == []
    clip_settings.TINYRAG_TEXT_ROUTE = "multilingual"
    warm_up()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("warm-up: text model not ready") for m in warnings), warnings


def test_warm_up_survives_an_unexpected_error_and_beats_between_steps(
    search_index, multilingual_settings, caplog, monkeypatch
):
    from search.ml import registry
    from search.ops.health import warm_up

    def broken():
        raise RuntimeError("a torch kernel crashed")

    monkeypatch.setattr(registry, "get_multilingual_embedder", broken)
    beats = []
    assert warm_up(between=lambda: beats.append(1)) == ["text model"]
    assert len(beats) == 5  # after each of index, image model, text model, query path, URL map
    failed = [r for r in caplog.records if r.getMessage() == "warm-up: text model failed"]
    assert failed
    assert failed[0].exc_info is not None


def test_the_web_tier_warms_the_search_path_and_the_worker_its_tasks_models(
    clip_settings, vlm_settings
):
    from search.ops.health import warm_up_steps

    assert list(warm_up_steps()) == ["index", "image model", "query path", "URL map"]
    assert list(warm_up_steps(web=False, describer=True)) == [
        "index",
        "image model",
        "description model",
    ]
    vlm_settings.TINYRAG_VLM_BACKEND = "openai"  # served elsewhere: nothing to load here
    assert list(warm_up_steps(web=False, describer=True)) == ["index", "image model"]


def test_warm_up_and_say_names_what_it_loads_then_says_ready(search_index):
    from search.ml.registry import get_clip_embedder, registry
    from search.ops.health import warm_up_and_say

    clear_index_services()
    registry.clear()
    said = []
    assert warm_up_and_say(said.append, before="the first request") == []
    assert said[0] == (
        "warm-up: loading the index, image model, query path, URL map before the first request"
    )
    assert said[1].startswith("warm-up: ready in ")
    assert said[1].endswith(" s")
    assert len(said) == 2
    assert get_clip_embedder().loaded
    assert get_index_service()._loaded is not None


def test_warm_up_and_say_names_what_is_not_ready(clip_settings, tmp_path, caplog):
    from search.ops.health import warm_up_and_say

    clip_settings.TINYRAG_INDEX_DIR = tmp_path  # no index here; CLIP loads regardless
    clear_index_services()
    said = []
    failed = warm_up_and_say(said.append, before="the first task", web=False)
    assert failed == ["index"]
    assert said[0] == "warm-up: loading the index, image model before the first task"
    assert said[1].startswith("warm-up: finished in ")
    assert said[1].endswith(
        "s, but not ready: index (see the messages above; each is tried again when first used)"
    )
