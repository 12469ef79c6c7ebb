"""Evaluation runs, the use cases: start one (now, or queued for a worker), execute it, cancel
it, and read it as a poll should see it.

A run is one job kind of search.ops.jobs: claimed by one worker, its progress bars are its
heartbeat, and a run silent for TINYRAG_EVALUATION_STALL_SECONDS (its worker was killed) is
failed, never retried: a run measures minutes to hours of work and is started again by hand.
A cancelled run that is still queued ends at once; a running one is flagged, and its worker
stops at its next heartbeat (a progress bar's update, at most a second apart while it works)
and stores what it finished. What a run measures is `evaluation.measure`; this module stores
what the measurements return, and how long each step took per item (`timings`, what the
form's estimate is based on).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from evaluation.config import EvaluationConfig
from evaluation.models import EvaluationRun
from evaluation.steps import Step
from search.errors import ApplicationError
from search.ops import jobs
from search.ops.progress import JobProgress, JobStopped

if TYPE_CHECKING:
    from evaluation.measure import Measured

EVALUATION_RUNS = jobs.JobKind(
    model=EvaluationRun,
    stall_seconds_setting="TINYRAG_EVALUATION_STALL_SECONDS",
    stalled_error="The run stopped making progress (its worker was stopped or crashed). "
    "Start it again.",
    stop_requested=Q(cancel_requested_at__isnull=False),
)


class RunCancelled(JobStopped):
    """Raised in the worker by a progress heartbeat that was refused: someone cancelled the
    run (or deleted it)."""


def create_run(*, config: EvaluationConfig, user=None) -> EvaluationRun:
    config = config.validated()
    return EvaluationRun.objects.create(
        mode=config.mode,
        configuration=config.to_json(),
        index_name=config.resolved_index_name,
        seed=config.seed,
        language=config.language,
        created_by=user if user is not None and user.is_authenticated else None,
    )


def request_run(*, config: EvaluationConfig, user) -> EvaluationRun:
    """A queued run, executed by a background worker (the run page's form)."""
    with transaction.atomic():
        run = create_run(config=config, user=user)
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    from evaluation.tasks import run_evaluation  # here: the tasks module imports this one

    run_evaluation.enqueue(run_id)


def evaluate(*, config: EvaluationConfig, user=None, console: bool = False) -> EvaluationRun:
    """Create a run and execute it here and now (the evaluate command; `console`: progress
    bars on stderr too)."""
    return execute_run(create_run(config=config, user=user).pk, console=console)


def with_stall_check(run: EvaluationRun) -> EvaluationRun:
    """The run as a poll should see it: a stalled one is failed first (cancelled, when it
    was asked to stop: its worker died before it could)."""
    if run.finished:
        return run
    cutoff = timezone.now() - timedelta(seconds=EVALUATION_RUNS.stall_seconds)
    silent = EvaluationRun.objects.filter(
        pk=run.pk, status=EvaluationRun.Status.RUNNING, updated_at__lt=cutoff,
        cancel_requested_at__isnull=False,
    )  # fmt: skip
    if silent.update(
        status=EvaluationRun.Status.CANCELLED, finished_at=timezone.now(), progress={}
    ):
        run.refresh_from_db()
        return run
    return jobs.with_stall_check(EVALUATION_RUNS, run)


def may_cancel(run: EvaluationRun, user) -> bool:
    """Whether this user may cancel this run (whatever its state): staff, or who started it."""
    if not user.is_authenticated:
        return False
    return user.is_staff or (run.created_by_id is not None and run.created_by_id == user.pk)


def cancel_run(*, run: EvaluationRun, user) -> EvaluationRun:
    """Cancel a queued run at once, or ask a running one to stop (its worker stops at its next
    heartbeat and keeps what it finished). A run that finished meanwhile stays as it is.
    PermissionDenied unless `may_cancel`."""
    if not may_cancel(run, user):
        raise PermissionDenied(_("Only staff or the person who started a run can cancel it."))
    now = timezone.now()
    rows = EvaluationRun.objects.filter(pk=run.pk, cancel_requested_at__isnull=True)
    rows.filter(status=EvaluationRun.Status.QUEUED).update(
        status=EvaluationRun.Status.CANCELLED, cancel_requested_at=now, cancelled_by=user,
        finished_at=now,
    )  # fmt: skip
    rows.filter(status=EvaluationRun.Status.RUNNING).update(
        cancel_requested_at=now, cancelled_by=user
    )
    return EvaluationRun.objects.select_related("created_by", "cancelled_by").get(pk=run.pk)


class RunProgress(JobProgress):
    """An evaluation run's progress bar and heartbeat (search.ops.progress.JobProgress): a
    refused heartbeat (the run was cancelled) raises RunCancelled."""

    stopped_error = RunCancelled

    def __init__(self, *args, run_id: int, **kwargs):
        super().__init__(*args, kind=EVALUATION_RUNS, job_id=run_id, **kwargs)


@dataclass
class RunRecord:
    """What a run's measurements returned so far, as the run's columns."""

    index_manifest: dict = field(default_factory=dict)
    model_ids: dict = field(default_factory=dict)
    sample_size: int | None = None
    metrics: dict = field(default_factory=dict)
    per_class: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    resolved: dict = field(default_factory=dict)

    def add(self, measured: Measured) -> None:
        if measured.manifest is not None:
            self.index_manifest = measured.manifest
        if self.sample_size is None:  # the query images, else (rag alone) the RAG sample
            self.sample_size = measured.sample_size
        self.model_ids.update(measured.model_ids)
        self.metrics.update(measured.metrics)
        self.per_class.update(measured.per_class)
        self.details.update(measured.details)
        self.warnings.extend(measured.warnings)
        self.resolved.update(measured.resolved)


def execute_run(run_id: int, *, console: bool = False) -> EvaluationRun:
    """Measure a queued run and store the outcome. A problem the operator can fix (no index, a
    model that cannot load, an empty split) ends the run `failed` with a readable error; a
    cancel ends it `cancelled`; either way it keeps what it measured before."""
    jobs.recover_stalled(EVALUATION_RUNS)
    if not jobs.claim(EVALUATION_RUNS, run_id):
        return EvaluationRun.objects.get(pk=run_id)  # done meanwhile, or another worker has it
    run = EvaluationRun.objects.get(pk=run_id)
    # here, not at the top: the engine imports torch and faiss, and the run pages import this
    from evaluation import measure

    record = RunRecord()
    steps: dict[str, tuple[int, float]] = {}
    progress = functools.partial(RunProgress, run_id=run.pk, console=console, timings=steps)
    config = EvaluationConfig.from_json(run.configuration)
    finish = functools.partial(_finish, run, record, steps, config)
    try:
        for measured in measure.measure_run(config, progress):
            record.add(measured)
    except RunCancelled:
        return finish(status=EvaluationRun.Status.CANCELLED)
    except (ApplicationError, OSError) as exc:  # domain errors say what to do
        return finish(error=jobs.readable_error(exc))
    except BaseException as exc:  # a bug: still never leave the run "running"
        finish(error=f"{type(exc).__name__}: {jobs.readable_error(exc)}")
        raise
    return finish()


def item_seconds(steps: dict[str, tuple[int, float]], *, contexts: int) -> dict[str, float]:
    """Seconds per item of what a run did, from its progress bars' items and seconds: a query
    image (embedded, then searched with), a text query (a class name embedded, then searched
    with), a generation (a described image's time over its contexts). Only what it measured."""

    def per_item(step: Step, divide_by: int = 1) -> float | None:
        items, seconds = steps.get(step.value, (0, 0.0))
        return seconds / (items * divide_by) if items else None

    rates = {}
    for name, embed, search in (
        ("query_image", Step.EMBED_IMAGES, Step.SEARCH_IMAGES),
        ("text_query", Step.EMBED_CLASSES, Step.SEARCH_CLASSES),
    ):
        parts = [r for r in (per_item(embed), per_item(search)) if r is not None]
        if parts:
            rates[name] = sum(parts)
    if (generation := per_item(Step.DESCRIBE, max(contexts, 1))) is not None:
        rates["generation"] = generation
    return rates


def _finish(
    run: EvaluationRun,
    record: RunRecord,
    steps: dict[str, tuple[int, float]],
    config: EvaluationConfig,
    *,
    error: str = "",
    status: str | None = None,
) -> EvaluationRun:
    jobs.finish(
        EVALUATION_RUNS,
        run.pk,
        error=error,
        status=status,
        progress={},
        index_manifest=record.index_manifest,
        model_ids=record.model_ids,
        sample_size=record.sample_size,
        metrics=record.metrics,
        per_class=record.per_class,
        details=record.details,
        warnings=record.warnings,
        configuration={**run.configuration, **record.resolved},
        timings=item_seconds(steps, contexts=len(config.rag_contexts)),
    )
    return EvaluationRun.objects.get(pk=run.pk)
