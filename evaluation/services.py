"""Evaluation runs, the use cases: start one (now, or queued for a worker), execute it, and read
it as a poll should see it.

A run is one job kind of search.ops.jobs: claimed by one worker, its progress bars are its
heartbeat, and a run silent for TINYRAG_EVALUATION_STALL_SECONDS (its worker was killed) is
failed, never retried: a run measures minutes to hours of work and is started again by hand.
What a run measures is `evaluation.measure`; this module stores what the measurements return.
"""

from __future__ import annotations

import functools
import io
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction
from tqdm import tqdm

from evaluation.config import EvaluationConfig
from evaluation.models import EvaluationRun
from search.errors import ApplicationError
from search.ops import jobs

if TYPE_CHECKING:
    from evaluation.measure import Measured

EVALUATION_RUNS = jobs.JobKind(
    model=EvaluationRun,
    stall_seconds_setting="TINYRAG_EVALUATION_STALL_SECONDS",
    stalled_error="The run stopped making progress (its worker was stopped or crashed). "
    "Start it again.",
)


def create_run(*, config: EvaluationConfig, user=None) -> EvaluationRun:
    config = config.validated()
    return EvaluationRun.objects.create(
        mode=config.mode,
        configuration=config.to_json(),
        index_name=config.resolved_index_name,
        seed=config.seed,
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
    """The run as a poll should see it: a stalled one is failed first."""
    return jobs.with_stall_check(EVALUATION_RUNS, run)


class RunProgress(tqdm):
    """A tqdm bar that records its step, count and total on the run's row (at most once a
    second) for the run page to show, and doubles as the run's heartbeat. Prints only with
    `console`."""

    monitor_interval = 0  # no monitor thread: every write happens on the run's own thread

    def __init__(self, *args, run_id: int, console: bool = False, **kwargs):
        self.run_id = run_id
        self.console = console
        kwargs.update(mininterval=1.0, file=sys.stderr if console else io.StringIO())
        super().__init__(*args, dynamic_ncols=console, **kwargs)

    def display(self, msg=None, pos=None):
        jobs.heartbeat(
            EVALUATION_RUNS,
            self.run_id,
            progress={"step": self.desc, "done": self.n, "total": self.total},
        )
        return super().display(msg, pos) if self.console else True


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
    model that cannot load, an empty split) ends the run `failed` with a readable error."""
    jobs.recover_stalled(EVALUATION_RUNS)
    if not jobs.claim(EVALUATION_RUNS, run_id):
        return EvaluationRun.objects.get(pk=run_id)  # done meanwhile, or another worker has it
    run = EvaluationRun.objects.get(pk=run_id)
    # here, not at the top: the engine imports torch and faiss, and the run pages import this
    from evaluation import measure

    record = RunRecord()
    progress = functools.partial(RunProgress, run_id=run.pk, console=console)
    try:
        for measured in measure.measure_run(
            EvaluationConfig.from_json(run.configuration), progress
        ):
            record.add(measured)
    except (ApplicationError, OSError) as exc:  # domain errors say what to do
        return _finish(run, record, error=jobs.readable_error(exc))
    except BaseException as exc:  # a bug: still never leave the run "running"
        _finish(run, record, error=f"{type(exc).__name__}: {jobs.readable_error(exc)}")
        raise
    return _finish(run, record)


def _finish(run: EvaluationRun, record: RunRecord, *, error: str = "") -> EvaluationRun:
    jobs.finish(
        EVALUATION_RUNS,
        run.pk,
        error=error,
        progress={},
        index_manifest=record.index_manifest,
        model_ids=record.model_ids,
        sample_size=record.sample_size,
        metrics=record.metrics,
        per_class=record.per_class,
        details=record.details,
        warnings=record.warnings,
        configuration={**run.configuration, **record.resolved},
    )
    return EvaluationRun.objects.get(pk=run.pk)
