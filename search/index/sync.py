"""Syncing a collection: import_dataset's rescan of its folder, then an incremental build_index
of the index it feeds, as one job (search.ops.jobs) recorded in a CollectionSync row.

Run here and now by `manage.py sync_collection`, or queued for a background worker: once, or
every N minutes (each sync that ends queues the next, at its `run_after`). One sync of a
collection runs at a time and one waits, as the database's constraints decide across every
worker and command. A sync whose worker died is failed after TINYRAG_SYNC_STALL_SECONDS
without progress; a schedule it belonged to goes on (the build it left resumes from its saved
shards). What the rescan and the build found is stored on the row for the Collections page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from search.catalog.datasets.importer import import_dataset
from search.catalog.models import CollectionSync, Dataset
from search.errors import ApplicationError
from search.index import service as index_service
from search.index.build import BuildOptions, build_index, resolve_dataset
from search.index.service import IndexType
from search.ops import jobs
from search.ops.progress import JobProgress, JobStopped

Status = CollectionSync.Status


def restore_schedules() -> None:
    """A collection whose latest sync was on a schedule but ended without queuing the next
    (its worker died) gets the next one queued now."""
    syncs = CollectionSync.objects.filter(dataset=OuterRef("dataset"))
    latest = syncs.order_by("-created_at", "-pk")
    ended = CollectionSync.objects.filter(
        pk=Subquery(latest.values("pk")[:1]), every_minutes__gt=0, status__in=jobs.FINISHED
    )
    for sync in ended.select_related("dataset"):
        _queue(sync.dataset, sync.index_name, sync.prune, sync.every_minutes, timezone.now())


SYNCS = jobs.JobKind(
    model=CollectionSync,
    stall_seconds_setting="TINYRAG_SYNC_STALL_SECONDS",
    stalled_error="The sync stopped making progress (its worker was stopped or crashed). "
    "The next sync goes on from the embeddings it saved.",
    after_check=restore_schedules,
)


class SyncBusy(ApplicationError):
    """Another sync of the collection is running."""

    code = "sync_busy"


class SyncProgress(JobProgress):
    """A sync's progress bar: its heartbeat, and its step on the row for the page."""

    def __init__(self, *args, sync_id: int, **kwargs):
        super().__init__(*args, kind=SYNCS, job_id=sync_id, **kwargs)


def _open(dataset_id: int):
    return CollectionSync.objects.filter(dataset_id=dataset_id, status__in=CollectionSync.OPEN)


def _queue(dataset: Dataset, index_name: str, prune: bool, every: int, at) -> CollectionSync:
    """The collection's queued sync, at `at`: created, or the waiting one changed to this; its
    task is enqueued when the transaction commits."""
    with transaction.atomic():
        fields = {"index_name": index_name, "prune": prune, "every_minutes": every, "run_after": at}
        waiting = CollectionSync.objects.select_for_update().filter(
            dataset=dataset, status=Status.QUEUED
        )
        sync = waiting.first() if waiting.update(**fields) else None
        if sync is None:
            try:
                with transaction.atomic():
                    sync = CollectionSync.objects.create(
                        dataset=dataset, trigger=CollectionSync.Trigger.WORKER, **fields
                    )
            except IntegrityError:  # another process queued one just now: that one, then
                waiting.update(**fields)
                sync = waiting.get()
        transaction.on_commit(functools.partial(_enqueue, sync.pk, at))
    return sync


def _enqueue(sync_id: int, at) -> None:
    from search.index.tasks import sync_collection_task  # the tasks module imports this one

    task = sync_collection_task
    if at is not None and at > timezone.now():
        task = task.using(run_after=at)
    task.enqueue(sync_id)


def request_sync(
    name: str | None,
    *,
    index_name: str | None = None,
    prune: bool = False,
    every_minutes: int | None = None,
) -> CollectionSync | None:
    """Queue a sync of the collection for a background worker: now, once (`every_minutes`
    None), or now and then every N minutes. `every_minutes=0` ends the collection's schedule:
    its waiting scheduled sync is deleted and a running one queues no next; returns None."""
    dataset = resolve_dataset(name)
    index_name = index_name or settings.TINYRAG_INDEX_NAME
    if every_minutes == 0:
        _open(dataset.pk).filter(status=Status.QUEUED, every_minutes__gt=0).delete()
        # the running one queues no next, and no ended one is a schedule to restore
        CollectionSync.objects.filter(dataset=dataset).update(every_minutes=0)
        return None
    return _queue(dataset, index_name, prune, every_minutes or 0, timezone.now())


def sync_now(
    name: str | None,
    *,
    index_name: str | None = None,
    prune: bool = False,
    workers: int | None = None,
    console: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> CollectionSync:
    """Sync the collection here and now (the command), recorded like a worker's sync.
    SyncBusy when one is running."""
    dataset = resolve_dataset(name)
    jobs.recover_stalled(SYNCS, CollectionSync.objects.filter(dataset=dataset))
    now = timezone.now()
    try:
        with transaction.atomic():
            sync = CollectionSync.objects.create(
                dataset=dataset,
                index_name=index_name or settings.TINYRAG_INDEX_NAME,
                trigger=CollectionSync.Trigger.COMMAND,
                prune=prune,
                status=Status.RUNNING,
                started_at=now,
            )
    except IntegrityError:
        running = _open(dataset.pk).filter(status=Status.RUNNING).first()
        since = f" since {running.started_at:%Y-%m-%d %H:%M} UTC" if running else ""
        raise SyncBusy(
            f"collection {dataset.name!r} is being synced{since}; wait for that sync to end "
            f"(or, if its worker died, for TINYRAG_SYNC_STALL_SECONDS)."
        ) from None
    return _run(sync, workers=workers, console=console, log=log)


def execute_sync(sync_id: int) -> CollectionSync:
    """Run a queued sync (the background task). One that finds its collection busy ends
    failed, saying so; a schedule goes on either way."""
    jobs.recover_stalled(SYNCS)
    try:
        with transaction.atomic():
            claimed = jobs.claim(SYNCS, sync_id)
    except IntegrityError:  # another sync of the collection is running
        sync = CollectionSync.objects.get(pk=sync_id)
        _finish(sync, error="Another sync of this collection was running; this one was skipped.")
        return sync
    sync = CollectionSync.objects.select_related("dataset").filter(pk=sync_id).first()
    if not claimed or sync is None:
        return sync  # done meanwhile, deleted (a schedule ended), or another worker has it
    return _run(sync)


def _build_options(sync: CollectionSync, workers: int | None) -> BuildOptions:
    """The build that keeps the collection's published index current: its splits, limit and
    index type as published (a new index: train and auto). An index whose type auto chose is
    built with auto again, which may choose another as the collection grows."""
    extra = {} if workers is None else {"workers": workers}
    try:
        published = index_service.read_manifest(Path(settings.TINYRAG_INDEX_DIR), sync.index_name)
    except index_service.SearchIndexError:
        published = None
    if published is None or published.dataset != sync.dataset.name:
        return BuildOptions(name=sync.index_name, dataset=sync.dataset.name, **extra)
    return BuildOptions(
        name=sync.index_name,
        dataset=sync.dataset.name,
        splits=tuple(published.splits),
        index_type=IndexType(published.requested_type or published.index_type),
        limit_per_class=published.limit_per_class,
        **extra,
    )


def _run(
    sync: CollectionSync,
    *,
    workers: int | None = None,
    console: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> CollectionSync:
    dataset = sync.dataset
    progress = functools.partial(SyncProgress, sync_id=sync.pk, console=console)
    try:
        report = import_dataset(
            root=Path(dataset.root),
            name=dataset.name,
            source=dataset.source,
            prune=sync.prune,
            progress_factory=progress,
            **({} if workers is None else {"workers": workers}),
        )
        found = {
            "images_added": report.images_added,
            "images_renamed": report.images_renamed,
            "images_changed": report.images_changed,
            "images_unchanged": report.images_unchanged,
            "images_missing": report.missing_on_disk,
            "images_pruned": report.pruned,
            "images_unreadable": len(report.unreadable),
        }
        jobs.heartbeat(SYNCS, sync.pk, **found)
        manifest = build_index(_build_options(sync, workers), progress_factory=progress, log=log)
    except JobStopped:  # the row was deleted meanwhile: nothing to record it on
        return sync
    except (ApplicationError, OSError) as exc:
        _finish(sync, error=jobs.readable_error(exc))
    except BaseException as exc:  # a bug: still never leave the sync "running"
        _finish(sync, error=f"{type(exc).__name__}: {jobs.readable_error(exc)}")
        raise
    else:
        _finish(
            sync,
            vectors_reused=manifest.reused,
            vectors_embedded=manifest.embedded,
            vectors_total=manifest.count,
        )
    sync.refresh_from_db()
    return sync


def _finish(sync: CollectionSync, *, error: str = "", **outcome) -> None:
    """End the sync, and queue the next one of its schedule (the row's every_minutes as it
    is now: a schedule ended meanwhile queues none)."""
    jobs.finish(SYNCS, sync.pk, error=error, progress={}, **outcome)
    every = CollectionSync.objects.filter(pk=sync.pk).values_list("every_minutes", flat=True)
    minutes = next(iter(every), 0)
    if not minutes:
        return
    # one queued meanwhile (--background) runs at its own time and carries the schedule on
    waiting = _open(sync.dataset_id).filter(status=Status.QUEUED)
    if not waiting.update(every_minutes=minutes):
        at = timezone.now() + timedelta(minutes=minutes)
        _queue(sync.dataset, sync.index_name, sync.prune, minutes, at)
