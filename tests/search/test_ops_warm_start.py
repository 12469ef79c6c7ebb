"""Warm start: `manage.py runserver` and `manage.py db_worker` load the models before the
first request or task, and say so (search/ops/management/commands/runserver.py, db_worker.py).

The commands' own code paths run here with the tiny models: runserver's `on_bind` (what
Django's server calls once the socket listens, before it accepts a request), and the worker's
handle() through call_command, with a task that records what was loaded when it ran.
tests/search/test_first_run.py starts the real development server as a process.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django_tasks import task

from search.index.service import clear_index_services, get_index_service
from search.ml.registry import get_clip_embedder, get_describer, registry
from search.ops.management.commands.runserver import Command as RunserverCommand

pytestmark = pytest.mark.django_db(transaction=True)  # the worker claims tasks as it would

SEEN_BY_TASKS: list[dict[str, bool]] = []


@task()
def record_what_was_loaded() -> str:
    """What the worker runs: which models this process had loaded when the task began."""
    SEEN_BY_TASKS.append(
        {
            "index": get_index_service()._loaded is not None,
            "clip": get_clip_embedder().loaded,
            "describer": get_describer().loaded,
        }
    )
    return "recorded"


@pytest.fixture
def cold(search_index, vlm_settings):
    """The tiny CLIP, its published index and the tiny Qwen2-VL configured; nothing loaded."""
    clear_index_services()
    registry.clear()
    SEEN_BY_TASKS.clear()
    yield
    SEEN_BY_TASKS.clear()


def bound_runserver(*, warm_up: bool) -> tuple[RunserverCommand, io.StringIO]:
    """runserver's command as handle() and inner_run() leave it for on_bind."""
    out = io.StringIO()
    command = RunserverCommand(stdout=out)
    command.addr, command._raw_ipv6, command._warm_up = "127.0.0.1", False, warm_up
    return command, out


def test_runserver_loads_the_models_before_it_accepts_a_request(cold):
    command, out = bound_runserver(warm_up=True)
    command.on_bind(8123)  # Django's run() serves requests only once this returns
    assert get_index_service()._loaded is not None
    assert get_clip_embedder().loaded
    assert not get_describer().loaded  # the web tier writes no descriptions
    text = out.getvalue()
    started = text.index("Starting development server at http://127.0.0.1:8123/")
    loading = text.index(
        "warm-up: loading the index, image model, query path, URL map before the first request"
    )
    ready = text.index("warm-up: ready in ")
    assert started < loading < ready


def test_runserver_without_warm_up_loads_nothing(cold):
    command, out = bound_runserver(warm_up=False)
    command.on_bind(8123)
    assert not get_clip_embedder().loaded
    assert get_index_service()._loaded is None
    assert "warm-up" not in out.getvalue()


def test_runserver_warms_up_unless_told_not_to(monkeypatch):
    parse = RunserverCommand().create_parser("manage.py", "runserver").parse_args
    assert parse([]).warm_up is True
    assert parse(["--no-warm-up"]).warm_up is False
    monkeypatch.setenv("TINYRAG_WARM_UP", "0")
    assert (
        RunserverCommand().create_parser("manage.py", "runserver").parse_args([]).warm_up is False
    )


def run_worker(*args: str) -> str:
    out = io.StringIO()
    call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", *args, stdout=out)
    return out.getvalue()


def test_the_worker_loads_clip_the_index_and_the_local_vlm_before_its_first_task(cold):
    record_what_was_loaded.enqueue()
    out = run_worker("--warm-up")
    assert SEEN_BY_TASKS == [{"index": True, "clip": True, "describer": True}]
    loading = out.index(
        "warm-up: loading the index, image model, description model before the first task"
    )
    assert loading < out.index("warm-up: ready in ")


def test_a_batch_run_of_the_worker_loads_only_what_its_tasks_use(cold):
    """--batch ("until the queue is empty") warms nothing unless asked: here the task itself
    loads nothing, so nothing is loaded when it runs."""
    record_what_was_loaded.enqueue()
    out = run_worker()
    assert SEEN_BY_TASKS == [{"index": False, "clip": False, "describer": False}]
    assert "warm-up" not in out


def test_a_worker_whose_vlm_cannot_load_says_so_and_runs_its_tasks(
    cold, vlm_settings, tmp_path, caplog
):
    vlm_settings.TINYRAG_VLM_MODEL = str(tmp_path / "no-such-vlm")
    record_what_was_loaded.enqueue()
    out = run_worker("--warm-up")
    assert SEEN_BY_TASKS == [{"index": True, "clip": True, "describer": False}]
    assert "but not ready: description model" in out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("warm-up: description model not ready") for m in warnings), warnings


def test_a_quiet_worker_warms_up_without_a_word(cold):
    record_what_was_loaded.enqueue()
    out = io.StringIO()
    call_command(
        "db_worker", "--batch", "--warm-up", "--no-startup-delay", "--interval", "0",
        stdout=out, verbosity=0,
    )  # fmt: skip
    assert SEEN_BY_TASKS == [{"index": True, "clip": True, "describer": True}]
    assert out.getvalue() == ""
