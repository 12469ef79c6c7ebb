"""The job lifecycle shared by descriptions and evaluation runs (search.ops.jobs), directly:
claim, heartbeat, finish, stall recovery by each kind's rule, and the task count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from evaluation.models import EvaluationRun
from evaluation.services import EVALUATION_RUNS
from search.descriptions.models import Description
from search.descriptions.queue import DESCRIPTIONS
from search.ops import jobs
from search.queries.models import SearchQuery

pytestmark = pytest.mark.django_db

STALL = 60  # seconds, the stall period every kind of these tests is given


@pytest.fixture(autouse=True)
def stall_periods(settings):
    settings.TINYRAG_DESCRIPTION_STALL_SECONDS = STALL
    settings.TINYRAG_EVALUATION_STALL_SECONDS = STALL


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def make_run(status: str = "queued", **fields) -> EvaluationRun:
    return EvaluationRun.objects.create(mode="image", index_name="tiny", status=status, **fields)


def make_description(user, status: str = "queued", **fields) -> Description:
    query = SearchQuery.objects.create(
        user=user, kind="text", text="lemon", top_k=5, encoder="clip", index_name="tiny",
        duration_ms=1.0,
    )  # fmt: skip
    values = {
        "query": query, "image_key": f"image:{query.pk}", "backend": "openai", "model": "m",
        "prompt_version": "rag-v1", "context_mode": "none", "generation_key": f"key-{query.pk}",
        "status": status,
    }  # fmt: skip
    return Description.objects.create(**{**values, **fields})


def silent_since(job, seconds: float) -> None:
    """The job's last sign of life was `seconds` ago."""
    type(job).objects.filter(pk=job.pk).update(updated_at=ago(seconds))


def test_claim_is_exclusive():
    run = make_run()

    assert jobs.claim(EVALUATION_RUNS, run.pk) is True
    assert jobs.claim(EVALUATION_RUNS, run.pk) is False  # the second worker loses
    run.refresh_from_db()
    assert run.status == "running"
    assert run.started_at is not None


def test_claim_counts_an_attempt_for_a_kind_that_retries(user):
    description = make_description(user, attempts=1)

    assert jobs.claim(DESCRIPTIONS, description.pk)
    description.refresh_from_db()
    assert (description.status, description.attempts) == ("running", 2)


def test_claim_takes_no_row_outside_the_kinds_scope(user):
    follower = make_description(user, generates=False)

    assert jobs.claim(DESCRIPTIONS, follower.pk) is False
    assert Description.objects.get(pk=follower.pk).status == "queued"


@pytest.mark.parametrize("status", ["done", "failed"])
def test_a_finished_job_is_never_reclaimed_nor_recovered(status):
    run = make_run(status, error="kept" if status == "failed" else "")
    silent_since(run, STALL * 10)
    before = EvaluationRun.objects.get(pk=run.pk)

    assert jobs.claim(EVALUATION_RUNS, run.pk) is False
    assert jobs.recover_stalled(EVALUATION_RUNS) == 0
    assert jobs.with_stall_check(EVALUATION_RUNS, before).status == status
    after = EvaluationRun.objects.get(pk=run.pk)
    assert (after.status, after.error, after.updated_at) == (
        before.status,
        before.error,
        before.updated_at,
    )


def test_heartbeat_moves_updated_at_and_records_progress():
    run = make_run("running")
    silent_since(run, 30)
    before = EvaluationRun.objects.get(pk=run.pk).updated_at

    assert jobs.heartbeat(EVALUATION_RUNS, run.pk, progress={"step": "search", "done": 3})
    run.refresh_from_db()
    assert run.updated_at > before
    assert run.progress == {"step": "search", "done": 3}


def test_a_heartbeat_for_a_deleted_job_says_so():
    run = make_run("running")
    EvaluationRun.objects.filter(pk=run.pk).delete()

    assert jobs.heartbeat(EVALUATION_RUNS, run.pk) is False


def test_finish_done_or_failed():
    done, failed = make_run("running"), make_run("running")

    assert jobs.finish(EVALUATION_RUNS, done.pk, metrics={"image": {"queries": 1}})
    assert jobs.finish(EVALUATION_RUNS, failed.pk, error="no index named 'x'")
    done.refresh_from_db()
    failed.refresh_from_db()
    assert (done.status, done.error, done.metrics) == ("done", "", {"image": {"queries": 1}})
    assert (failed.status, failed.error) == ("failed", "no index named 'x'")
    assert done.finished_at is not None
    assert failed.finished_at is not None


def test_a_stalled_job_with_attempts_left_is_queued_again(user):
    requeued = []
    kind = jobs.JobKind(
        model=Description,
        stall_seconds_setting="TINYRAG_DESCRIPTION_STALL_SECONDS",
        stalled_error="attempt {attempts} of {max_attempts}",
        max_attempts=3,
        on_requeue=requeued.append,
    )
    description = make_description(user, "running", attempts=2)
    silent_since(description, STALL + 1)

    assert jobs.recover_stalled(kind) == 1
    description.refresh_from_db()
    assert (description.status, description.attempts, description.error) == ("queued", 2, "")
    assert requeued == [description.pk]  # one task for the one job queued again


def test_a_stalled_job_without_attempts_left_is_failed_with_its_kinds_message(user):
    description = make_description(user, "running", attempts=2)
    silent_since(description, STALL + 1)

    assert jobs.recover_stalled(DESCRIPTIONS) == 1
    description.refresh_from_db()
    assert description.status == "failed"
    assert description.error == (
        "Generation stopped making progress (attempt 2 of 2; the worker may have died). "
        "Regenerate to try again."
    )
    assert description.finished_at is not None


def test_a_stalled_evaluation_run_is_failed_not_retried():
    run = make_run("running")
    silent_since(run, STALL + 1)

    assert jobs.recover_stalled(EVALUATION_RUNS) == 1
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error == (
        "The run stopped making progress (its worker was stopped or crashed). Start it again."
    )


def test_a_job_silent_for_less_than_the_stall_period_is_left_running():
    run = make_run("running")
    silent_since(run, STALL - 30)  # well inside the period, whatever the test machine's speed

    assert jobs.recover_stalled(EVALUATION_RUNS) == 0
    assert EvaluationRun.objects.get(pk=run.pk).status == "running"


def test_a_queued_job_is_never_stalled_by_waiting(user):
    description = make_description(user, "queued", attempts=2)
    run = make_run("queued")
    silent_since(description, STALL * 10)
    silent_since(run, STALL * 10)

    assert jobs.recover_stalled(DESCRIPTIONS) == 0
    assert jobs.recover_stalled(EVALUATION_RUNS) == 0
    assert Description.objects.get(pk=description.pk).status == "queued"
    assert EvaluationRun.objects.get(pk=run.pk).status == "queued"


def test_recovery_leaves_rows_outside_the_kinds_scope(user):
    follower = make_description(user, "running", generates=False, attempts=2)
    silent_since(follower, STALL + 1)

    assert jobs.recover_stalled(DESCRIPTIONS) == 0
    assert Description.objects.get(pk=follower.pk).status == "running"


def test_recovery_of_one_job_leaves_the_others():
    mine, other = make_run("running"), make_run("running")
    silent_since(mine, STALL + 1)
    silent_since(other, STALL + 1)

    polled = EvaluationRun.objects.get(pk=mine.pk)
    assert jobs.with_stall_check(EVALUATION_RUNS, polled).status == "failed"  # refreshed
    assert EvaluationRun.objects.get(pk=other.pk).status == "running"


def test_after_check_runs_after_every_stall_check():
    checks = []
    kind = jobs.JobKind(
        model=EvaluationRun,
        stall_seconds_setting="TINYRAG_EVALUATION_STALL_SECONDS",
        stalled_error="stalled",
        after_check=lambda: checks.append(1),
    )

    jobs.recover_stalled(kind)
    jobs.with_stall_check(kind, make_run("running"))
    assert checks == [1, 1]


def test_waiting_tasks_counts_the_database_queue_by_task():
    from evaluation.tasks import run_evaluation
    from search.descriptions.tasks import generate_description

    generate_description.enqueue()
    generate_description.enqueue()
    run_evaluation.enqueue(1)

    assert jobs.waiting_tasks() == 3
    assert jobs.waiting_tasks("search.descriptions.tasks.generate_description") == 2
    assert jobs.waiting_tasks("evaluation.tasks.run_evaluation") == 1


def test_waiting_tasks_is_none_for_a_backend_with_its_own_broker(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}

    assert jobs.waiting_tasks() is None


def test_a_readable_error_is_one_bounded_line():
    assert jobs.readable_error(ValueError("first line\nsecond line")) == "first line"
    assert jobs.readable_error(ValueError("x" * 600)) == "x" * 500
    assert jobs.readable_error(KeyError()) == "KeyError"
    assert jobs.readable_error(RuntimeError("CUDA out of memory. Tried 2 GiB\nmore")) == (
        "The model ran out of memory: CUDA out of memory. Tried 2 GiB"
    )
