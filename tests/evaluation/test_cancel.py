"""Cancelling a run: at once while it waits, at the worker's next heartbeat while it runs,
keeping what it finished; only staff or whoever started it may."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from evaluation import services
from evaluation.config import EvaluationConfig
from evaluation.models import EvaluationRun
from evaluation.tasks import run_evaluation
from search.ops import jobs
from tests.evaluation.conftest import INDEX_NAME
from tests.evaluation.test_views import chart_svg, make_run

pytestmark = pytest.mark.django_db


def cancel_url(run) -> str:
    return reverse("evaluation:run-cancel", args=[run.pk])


def running(**fields) -> EvaluationRun:
    return make_run(status="running", metrics={}, per_class={}, finished_at=None, **fields)


def test_a_queued_run_is_cancelled_at_once_and_the_worker_leaves_it(admin_client, admin_user):
    run = services.create_run(config=EvaluationConfig(mode="image"), user=admin_user)

    response = admin_client.post(cancel_url(run))

    assert response["Location"] == reverse("evaluation:run", args=[run.pk])
    run.refresh_from_db()
    assert (run.status, run.cancelled_by, run.finished) == ("cancelled", admin_user, True)
    assert run.finished_at is not None
    assert run_evaluation.call(run.pk) == "cancelled"  # the task finds nothing to do
    run.refresh_from_db()
    assert (run.status, run.started_at, run.metrics) == ("cancelled", None, {})
    page = admin_client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    assert "It stopped before it measured anything." in page
    assert "The run is cancelled." in page  # the message after the redirect


def test_a_running_run_is_asked_to_stop_and_its_next_heartbeat_is_refused(admin_client):
    run = running(progress={"step": "search by image", "done": 1, "total": 9})

    admin_client.post(cancel_url(run))

    run.refresh_from_db()
    assert run.status == "running"  # until its worker stops
    assert run.cancel_requested_at is not None
    page = admin_client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    assert "Stopping: the run ends after its current step" in page
    assert 'id="cancel-run"' not in page  # asked once is enough
    assert jobs.heartbeat(services.EVALUATION_RUNS, run.pk, progress={}) is False
    with pytest.raises(services.RunCancelled):
        services.RunProgress(total=3, desc="search by image", run_id=run.pk)
    assert tqdm_lock_is_free()  # raised outside tqdm's lock: other bars do not hang


def tqdm_lock_is_free() -> bool:
    """Whether another thread can take tqdm's process-wide write lock (within 5 s)."""
    from tqdm import tqdm

    taken = []

    def take():
        held = []
        for lock in tqdm.get_lock().locks:  # a threading and a multiprocessing RLock
            if not lock.acquire(timeout=5):
                break
            held.append(lock)
        taken.append(len(held) == len(tqdm.get_lock().locks))
        for lock in reversed(held):
            lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return taken == [True]


def test_a_bar_stops_at_its_next_update_once_cancelled():
    run = running()
    timings: dict = {}
    bar = services.RunProgress(total=3, desc="search by image", run_id=run.pk, timings=timings)
    EvaluationRun.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    bar.update(1)  # within a second of the last heartbeat: no heartbeat, nothing refused
    bar.last_print_t -= 2  # a second later: the next update is a heartbeat
    with pytest.raises(services.RunCancelled):
        bar.update(1)
    bar.close()  # unwinding: closed once, not raised again
    assert timings["search by image"][0] == 2
    assert tqdm_lock_is_free()


def test_cancel_with_htmx_answers_the_status_card(admin_client):
    run = running()
    response = admin_client.post(cancel_url(run), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="run-status"')
    assert "Stopping" in html
    assert 'hx-trigger="every 2s"' in html  # it polls on until the worker has stopped


def test_whoever_started_a_run_may_cancel_it(client, django_user_model):
    starter = django_user_model.objects.create_user("carol", password="x-long-passphrase-1")
    run = running(created_by=starter)
    client.force_login(starter)

    assert (
        'id="cancel-run"' in client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    )
    assert client.post(cancel_url(run)).status_code == 302
    run.refresh_from_db()
    assert run.cancelled_by == starter


def test_another_user_cannot_cancel_a_run(auth_client, django_user_model):
    starter = django_user_model.objects.create_user("carol", password="x-long-passphrase-1")
    run = running(created_by=starter)
    page = auth_client.get(reverse("evaluation:run", args=[run.pk]))

    assert page.status_code == 200  # another user's run can be read, as before...
    assert 'id="cancel-run"' not in page.content.decode()  # ...not cancelled
    assert auth_client.post(cancel_url(run)).status_code == 403
    run.refresh_from_db()
    assert (run.status, run.cancel_requested_at) == ("running", None)


def test_cancel_needs_a_post_and_a_real_run(admin_client):
    run = running()
    assert admin_client.get(cancel_url(run)).status_code == 405
    assert admin_client.post(reverse("evaluation:run-cancel", args=[999])).status_code == 404


def test_a_finished_run_stays_as_it_was(admin_client):
    run = make_run()
    admin_client.post(cancel_url(run))
    run.refresh_from_db()
    assert (run.status, run.cancel_requested_at) == ("done", None)


def test_a_cancelled_run_whose_worker_died_ends_cancelled_not_failed(auth_client, settings):
    run = running(cancel_requested_at=timezone.now())
    stale = timezone.now() - timedelta(seconds=settings.TINYRAG_EVALUATION_STALL_SECONDS + 1)
    EvaluationRun.objects.filter(pk=run.pk).update(updated_at=stale)

    url = reverse("evaluation:run", args=[run.pk])
    assert auth_client.get(url, headers={"HX-Request": "true"})["HX-Refresh"] == "true"
    run.refresh_from_db()
    assert (run.status, run.error) == ("cancelled", "")


def cancel_at_step(run_id: int, step: str, user):
    """A database hook that cancels the run, as a person pressing Cancel would, right after
    its worker's heartbeat has recorded `step` as the current step."""
    state = {"busy": False, "done": False}

    def hook(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        is_run_update = sql.lstrip().upper().startswith("UPDATE") and "evaluationrun" in sql
        if is_run_update and not state["busy"] and not state["done"]:
            state["busy"] = True  # the hook's own queries pass through it too
            try:
                run = EvaluationRun.objects.get(pk=run_id)
                if run.status == "running" and run.progress.get("step") == step:
                    services.cancel_run(run=run, user=user)
                    state["done"] = True
            finally:
                state["busy"] = False
        return result

    return hook, state


def test_the_worker_stops_at_its_next_heartbeat_and_keeps_what_it_finished(
    solid_index, settings, admin_client, admin_user
):
    settings.TINYRAG_VLM_BACKEND = "none"  # "all": image, text, zero-shot
    run = services.create_run(
        config=EvaluationConfig(mode="all", index_name=INDEX_NAME, ks=(1, 5), workers=0),
        user=admin_user,
    )
    # image retrieval is measured first; cancel when the text step begins
    hook, state = cancel_at_step(run.pk, "embed class names", admin_user)

    with connection.execute_wrapper(hook):
        status = run_evaluation.call(run.pk)  # the real task, in this process

    assert state["done"]
    assert status == "cancelled"
    run.refresh_from_db()
    assert (run.status, run.error, run.progress) == ("cancelled", "", {})
    assert set(run.metrics) == {"image"}  # finished before the cancel; text, zero-shot never
    assert run.metrics["image"]["recall@1"] == 1.0  # solid colours: perfect by construction
    assert set(run.per_class) == {"image"}
    assert run.timings["query_image"] > 0  # what it measured prices later estimates
    page = admin_client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    assert "The results below are what it finished before it stopped." in page
    assert f"by {admin_user.get_username()}" in page
    assert chart_svg(page, "chart-recall").startswith("<svg")
    listing = admin_client.get("/evaluation/").content.decode()
    assert "image R@1 <strong>1.000</strong>" in listing


def test_a_run_that_is_not_cancelled_records_its_timings(solid_index, settings):
    settings.TINYRAG_VLM_BACKEND = "none"
    run = services.create_run(
        config=EvaluationConfig(mode="text", index_name=INDEX_NAME, ks=(1,), workers=0)
    )
    assert run_evaluation.call(run.pk) == "done"
    run.refresh_from_db()
    assert set(run.timings) == {"text_query"}
    assert run.timings["text_query"] > 0
