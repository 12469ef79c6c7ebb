"""One lifecycle for background jobs: descriptions and evaluation runs live by the same rules.

A job is a row with a `status` (queued -> running -> done | failed), `started_at`,
`finished_at`, and `updated_at` as its heartbeat. The mechanics, parameterised per kind by a
`JobKind`:

- claim: queued -> running, in one conditional UPDATE, so of two workers racing for a job
  exactly one wins; a kind that retries counts the attempt here.
- heartbeat: whoever works on a job moves `updated_at` (with any progress it records) more
  often than the kind's stall period; a heartbeat refused (the row is gone, or the kind's
  `stop_requested` matches it: someone cancelled it) tells the worker to stop.
- finish: done, or failed with a readable error (or a final status of the kind's own, such
  as an evaluation run's cancelled).
- stall: a running job whose heartbeat is older than the kind's stall period was left by a
  dead worker. It is queued again while it has attempts left, else failed with the kind's
  message. Both are conditional on the job still being running and still silent, so a job
  that finished (or came back to life) meanwhile is never touched.

What is particular to a kind (which task picks a job up, the descriptions' fair order and
their followers) stays with the kind; this module knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django_tasks_db import DatabaseBackend
from django_tasks_db.models import DBTaskResult

J = TypeVar("J", bound=models.Model)


class JobStatus(models.TextChoices):
    """The status of every job: both job models' `Status`."""

    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


FINISHED = (JobStatus.DONE, JobStatus.FAILED)
ERROR_CHARS = 500  # of an exception's first line, stored as the job's error


@dataclass(frozen=True)
class JobKind:
    """How one kind of job lives.

    `max_attempts` above 1 needs an `attempts` field on the model: each claim counts one, and
    a stalled job is queued again until it has had them all. `stalled_error` is formatted with
    `attempts` and `max_attempts`. `scope` says which of the model's rows are jobs at all (a
    description that follows another's generation is not). `on_requeue` runs with the pk of each
    job a stall check queued again (a queue of tasks needs a task for it); `after_check` after
    every stall check (the descriptions' queue replaces lost tasks there). `stop_requested`
    matches the jobs whose worker is to stop at its next heartbeat (a cancel)."""

    model: type[models.Model]
    stall_seconds_setting: str
    stalled_error: str
    max_attempts: int = 1
    scope: Q = field(default_factory=Q)
    on_requeue: Callable[[int], object] | None = None
    after_check: Callable[[], object] | None = None
    stop_requested: Q | None = None

    @property
    def retries(self) -> bool:
        return self.max_attempts > 1

    @property
    def stall_seconds(self) -> int:
        return getattr(settings, self.stall_seconds_setting)

    def jobs(self) -> models.QuerySet:
        return self.model.objects.filter(self.scope)


def claim(kind: JobKind, pk: int, **fields) -> bool:
    """Mark a queued job running (with `fields`: who took it); False when it is not queued
    (done, gone, or another worker won it)."""
    now = timezone.now()
    changes: dict = {**fields, "status": JobStatus.RUNNING, "started_at": now, "updated_at": now}
    if kind.retries:
        changes["attempts"] = F("attempts") + 1
    return bool(kind.jobs().filter(pk=pk, status=JobStatus.QUEUED).update(**changes))


def heartbeat(kind: JobKind, pk: int, **progress) -> bool:
    """A sign of life from the job's worker, with whatever progress it records (the text so
    far, the current step); False when the row is gone (deleted) or asked to stop (the kind's
    `stop_requested`): stop working on it."""
    rows = kind.model.objects.filter(pk=pk)
    if kind.stop_requested is not None:
        rows = rows.exclude(kind.stop_requested)
    return bool(rows.update(**progress, updated_at=timezone.now()))


def finish(
    kind: JobKind, pk: int, *, error: str = "", status: str | None = None, **outcome
) -> bool:
    """The job is done (no error) or failed (with it), with what it produced; `status`: a
    final status of the kind's own instead (an evaluation run's cancelled). The worker's word
    is final: it is written whatever a stall check decided meanwhile. False when the row is
    gone."""
    now = timezone.now()
    return bool(
        kind.model.objects.filter(pk=pk).update(
            status=status or (JobStatus.FAILED if error else JobStatus.DONE),
            error=error,
            **outcome,
            finished_at=now,
            updated_at=now,
        )
    )


def readable_error(exc: BaseException) -> str:
    """A failed job's error as its page shows it: the exception's first line, bounded."""
    text = str(exc).strip() or type(exc).__name__
    if "out of memory" in text.lower():
        return f"The model ran out of memory: {text.splitlines()[0]}"
    return text.splitlines()[0][:ERROR_CHARS]


def recover_stalled(kind: JobKind, queryset: models.QuerySet | None = None) -> int:
    """Running jobs (of `queryset`, default all) silent for the kind's stall period: queued
    again while they have attempts left, else failed. Returns how many changed. A queued job
    is never stalled by waiting, however long the queue."""
    cutoff = timezone.now() - timedelta(seconds=kind.stall_seconds)
    silent = Q(status=JobStatus.RUNNING, updated_at__lt=cutoff)
    rows = (queryset if queryset is not None else kind.model.objects).filter(kind.scope, silent)
    changed = 0
    for job in rows.only("pk", *(["attempts"] if kind.retries else [])):
        still_silent = kind.model.objects.filter(silent, pk=job.pk)
        tried = job.attempts if kind.retries else 1  # a kind without retries has one attempt
        if tried < kind.max_attempts:
            requeued = still_silent.update(status=JobStatus.QUEUED, updated_at=timezone.now())
            if requeued and kind.on_requeue is not None:
                kind.on_requeue(job.pk)
            changed += requeued
        else:
            now = timezone.now()
            changed += still_silent.update(
                status=JobStatus.FAILED,
                finished_at=now,
                updated_at=now,
                error=kind.stalled_error.format(attempts=tried, max_attempts=kind.max_attempts),
            )
    if kind.after_check is not None:
        kind.after_check()
    return changed


def with_stall_check(kind: JobKind, job: J) -> J:
    """The job as a poll should see it: a stalled one is first queued again or failed."""
    if job.status not in FINISHED and recover_stalled(kind, kind.model.objects.filter(pk=job.pk)):
        job.refresh_from_db()
    return job


def is_rq(backend) -> bool:
    """Whether a task backend is django-tasks-rq's (TINYRAG_TASKS_BACKEND=rq)."""
    return type(backend).__module__.startswith("django_tasks_rq")


def waiting_tasks(task_path: str | None = None) -> int | None:
    """Tasks waiting to run in the default task backend's queue (only those of one task,
    given its module path): the database backend's ready rows, or the jobs in RQ's Redis
    lists (a Redis without persistence loses them on a restart, as a flushed database
    does); None for another backend, whose queue this cannot see."""
    backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
    if isinstance(backend, DatabaseBackend):
        ready = DBTaskResult.objects.ready()
        return (ready.filter(task_path=task_path) if task_path else ready).count()
    if is_rq(backend):
        return _rq_waiting(backend, task_path)
    return None


def _rq_waiting(backend, task_path: str | None) -> int:
    import django_rq  # here: installed only with the RQ backend (tinyrag_site/settings.py)

    queues = [django_rq.get_queue(name) for name in sorted(backend.queues)]
    if task_path is None:
        return sum(queue.count for queue in queues)
    # a queue holds at most TINYRAG_DESCRIPTION_QUEUE_MAX descriptions and a few evaluations
    return sum(job.func_name == task_path for queue in queues for job in queue.get_jobs())
