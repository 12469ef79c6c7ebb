"""`build_index --distributed`: a build's shards embedded by task workers on any machines.

The command plans the build as a local one does (search/index/build.py: the same images,
reused vectors and shards, so either kind of build resumes the other's saved shards), writes
what a worker needs into the build's shard folder, records a BuildShard row for every shard
and enqueues a task for each one still to embed. A worker (`manage.py worker`) that shares the
database, the dataset's files at the same paths and the shard folder (TINYRAG_SHARD_DIR) takes
a shard: claims its row, embeds it with a heartbeat, saves it in the shard folder, marks the
row done. Meanwhile the command watches the rows:

- a shard whose worker fell silent for TINYRAG_SHARD_STALL_SECONDS (killed, its machine gone)
  is queued again, with a new task, for any worker; after 3 attempts the build stops;
- a shard that failed (the worker's CLIP is not the build's, its files cannot be read there)
  stops the build with the shard's error;
- once every shard is saved, it merges them with the reused vectors and publishes, as a local
  build does.

The command stopped (Ctrl-C, its machine restarted) loses nothing: workers go on with the
queued shards, and the same command started again picks up the rows and saved shards, queues
what has no task left, and publishes when all are in.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings

from search.catalog.models import BuildShard, Dataset, Image
from search.index.build import (
    BuildError,
    BuildOptions,
    PreparedBuild,
    ShardStore,
    _write_atomically,
    embed_shards,
    embedding_recipe,
    prepare_build,
    publish_build,
    shard_root,
)
from search.index.service import IndexManifest
from search.ml.batches import ImageFile, default_decode_workers
from search.ml.registry import get_clip_embedder
from search.ops import jobs
from search.ops.progress import JobProgress, JobStopped

Status = BuildShard.Status
SHARD_PRIORITY = -10  # behind people's descriptions, where the backend orders by priority
POLL_SECONDS = 1.0
QUIET_SECONDS = 60  # without a shard moving: the command asks whether any worker runs


def _enqueue(shard_id: int) -> None:
    from search.index.tasks import embed_shard_task  # the tasks module imports this one

    task = embed_shard_task
    if task.get_backend().supports_priority:
        task = task.using(priority=SHARD_PRIORITY)
    task.enqueue(shard_id)


SHARDS = jobs.JobKind(
    model=BuildShard,
    stall_seconds_setting="TINYRAG_SHARD_STALL_SECONDS",
    stalled_error="Its worker stopped making progress {attempts} times (killed, or out of "
    "memory?); the build stops here. Saved shards are kept: run the command again.",
    max_attempts=3,
    on_requeue=_enqueue,  # a stalled shard's task died with its worker: one for the next
)
WORK_FILE = "work.json"  # what a worker needs to know about the build
TODO_IDS = "todo-ids.npy"  # the ids of the images to embed, in shard order


def _write_work(prepared: PreparedBuild) -> None:
    store, options = prepared.store, prepared.options
    work = {
        "fingerprint": prepared.fingerprint,
        "dataset": prepared.dataset.name,
        "model_id": prepared.model_id,
        "preprocessing": prepared.recipe,
        "dim": prepared.dim,
        "batch_size": options.batch_size,
        "shard_size": prepared.shard_size,
        "compile": prepared.compile_default(len(prepared.todo)),
    }
    ids = np.fromiter((f.id for f in prepared.todo), dtype=np.int64, count=len(prepared.todo))

    def write_ids(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file, not a path: np.save would append ".npy" to it
            np.save(f, ids)

    _write_atomically(store.folder / TODO_IDS, write_ids)
    _write_atomically(store.folder / WORK_FILE, lambda p: p.write_text(json.dumps(work)))


def _record_shards(prepared: PreparedBuild) -> list[int]:
    """A row for every shard of the build; returns the rows that need a task: new ones, those
    whose task may have been lost with an earlier command, and failed ones tried again.
    Rows of an earlier build of the same folder (another plan) are deleted: their tasks find
    nothing to do."""
    store, fingerprint = prepared.store, prepared.fingerprint
    BuildShard.objects.filter(store=store.folder.name).exclude(build=fingerprint).delete()
    shards = BuildShard.objects.filter(build=fingerprint)
    recorded = set(shards.values_list("number", flat=True))
    new = [
        BuildShard(
            build=fingerprint,
            index_name=prepared.options.name,
            store=store.folder.name,
            number=number,
            images=prepared.shard_images(number),
        )
        for number in range(prepared.shards)
        if number not in recorded
    ]
    BuildShard.objects.bulk_create(new)
    saved = [n for n in range(prepared.shards) if store.done(n)]
    shards.filter(number__in=saved).exclude(status=Status.DONE).update(status=Status.DONE)
    # done, but its file is gone (the folder was emptied), or failed: to do again
    shards.exclude(number__in=saved).filter(status__in=jobs.FINISHED).update(
        status=Status.QUEUED, attempts=0, error="", progress={}
    )
    return list(shards.filter(status=Status.QUEUED).values_list("pk", flat=True))


def pause(seconds: float) -> None:
    """The command's wait between two looks at the shards."""
    time.sleep(seconds)


def build_distributed(
    options: BuildOptions,
    *,
    embedder=None,
    index_dir: Path | None = None,
    progress_factory=None,
    log: Callable[[str], None] = lambda _: None,
    poll_seconds: float = POLL_SECONDS,
    wait: Callable[[float], object] | None = None,
) -> IndexManifest:
    """Plan the build, have the task workers embed its shards, then merge and publish. The
    rows stay, as the record of which worker embedded which shard, until the next build of
    the same index replaces them. `wait` (default: `pause`) passes the time between looks."""
    wait = wait or pause
    if embedder is None:
        embedder = get_clip_embedder()
    index_dir = Path(index_dir or settings.TINYRAG_INDEX_DIR)
    prepared = prepare_build(options, embedder, index_dir, log)
    rows = BuildShard.objects.filter(build=prepared.fingerprint)
    if prepared.shards:
        _write_work(prepared)
        waiting = _record_shards(prepared)
        for shard_id in waiting:
            _enqueue(shard_id)
        log(
            f"Queued {len(waiting)} of {prepared.shards} shards ({len(prepared.todo):,} images "
            f"to embed) for the task workers: `manage.py worker` on any machine that shares "
            f"this database, the dataset's folder and {prepared.store.folder.parent}."
        )
    started = time.perf_counter()
    bar = (
        progress_factory(total=len(prepared.todo), desc="embed (workers)", unit="img")
        if progress_factory
        else None
    )
    moved, last_done, quiet_warned = time.monotonic(), -1, False
    try:
        while True:
            done, all_saved = _look(prepared, rows)
            if bar is not None:
                bar.update(done - bar.n)
            if all_saved:
                break
            if done != last_done:
                moved, last_done = time.monotonic(), done
            elif not quiet_warned and time.monotonic() - moved >= QUIET_SECONDS:
                quiet_warned = True
                log(
                    f"Nothing embedded for {QUIET_SECONDS} s: is a `manage.py worker` running "
                    "(with this database and TINYRAG_SHARD_DIR)? The shards wait for one."
                )
            wait(poll_seconds)
    finally:
        if bar is not None:
            bar.close()
    embed_seconds = time.perf_counter() - started if prepared.shards else 0.0
    return publish_build(
        prepared, index_dir, embedded=len(prepared.todo), embed_seconds=embed_seconds, log=log
    )


def _look(prepared: PreparedBuild, rows) -> tuple[int, bool]:
    """One look at the shards: silent ones queued again (with a task) or, out of attempts,
    the build stopped; a failed one stops it. Returns the images embedded so far and whether
    every shard is saved."""
    jobs.recover_stalled(SHARDS, rows)
    failed = rows.filter(status=Status.FAILED).first()
    if failed is not None:
        by = f" on {failed.worker}" if failed.worker else ""
        raise BuildError(
            f"shard {failed.number} of index {failed.index_name!r} failed{by}: {failed.error} "
            "The shards saved so far are kept: run the same command again to go on."
        )
    saved = {n for n in range(prepared.shards) if prepared.store.done(n)}
    done = sum(
        images if number in saved else min(images, int(progress.get("done") or 0))
        for number, images, progress in rows.values_list("number", "images", "progress")
    )
    return done, len(saved) == prepared.shards


# --- the worker's side ----------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def embed_shard(shard_id: int) -> str:
    """Embed one shard of a distributed build (the task): claim it, embed its images with a
    heartbeat, save it in the build's shard folder. Returns what became of it."""
    shard = BuildShard.objects.filter(pk=shard_id).first()
    if shard is None:
        return "gone"  # its build was published, or planned again differently
    if shard.status != Status.QUEUED:
        return str(shard.status)  # another worker has it, or had it
    store = ShardStore(shard_root(Path(settings.TINYRAG_INDEX_DIR)) / shard.store)
    try:
        work = json.loads((store.folder / WORK_FILE).read_text())
        ids = np.load(store.folder / TODO_IDS, mmap_mode="r")
    except (OSError, ValueError) as exc:
        jobs.finish(
            SHARDS,
            shard.pk,
            error=f"This worker cannot read the build's shard folder {store.folder} ({exc}); "
            "TINYRAG_SHARD_DIR must name the storage every machine of the build shares.",
        )
        return "failed"
    if work["fingerprint"] != shard.build:
        return "stale"  # the folder holds a newer plan; this row's build is being replaced
    embedder = get_clip_embedder()
    embedder.load()  # before the claim: a model loading is not a silent worker
    ours = (embedder.model_id, embedding_recipe(embedder), embedder.dim)
    theirs = (work["model_id"], work["preprocessing"], work["dim"])
    if ours != theirs:
        jobs.finish(
            SHARDS,
            shard.pk,
            error=f"This worker's CLIP ({ours[0]}, preprocessing {ours[1]}, dim {ours[2]}) is "
            f"not the build's ({theirs[0]}, {theirs[1]}, {theirs[2]}): set TINYRAG_CLIP_MODEL "
            "(and TINYRAG_DEVICE's precision) alike on every machine.",
        )
        return "failed"
    if not jobs.claim(SHARDS, shard.pk, worker=worker_name()):
        return "taken"
    size = work["shard_size"]
    try:
        files = _shard_files(work["dataset"], ids[shard.number * size : (shard.number + 1) * size])
        if work["compile"]:
            embedder.compile_image_batches()
        bar = JobProgress(kind=SHARDS, job_id=shard.pk, total=shard.images, desc="embed")
        try:
            embed_shards(
                files,
                store,
                embedder,
                first=shard.number,
                shard_size=size,
                batch_size=work["batch_size"],
                workers=min(default_decode_workers(), max(0, len(files) // work["batch_size"])),
                bar=bar,
            )
        finally:
            bar.close()
    except JobStopped:
        return "gone"
    except BaseException as exc:  # never leave the shard running: its build would wait
        jobs.finish(SHARDS, shard.pk, error=jobs.readable_error(exc))
        if isinstance(exc, (BuildError, OSError)):
            return "failed"
        raise
    jobs.finish(SHARDS, shard.pk, progress={"done": shard.images})
    return "done"


def _shard_files(dataset_name: str, ids: np.ndarray) -> list[ImageFile]:
    """The shard's images in its order, at the paths the database gives under the dataset's
    root (the same path on every machine)."""
    dataset = Dataset.objects.get(name=dataset_name)
    paths = dict(
        Image.objects.filter(dataset=dataset, pk__in=[int(i) for i in ids]).values_list(
            "pk", "path"
        )
    )
    missing = [int(i) for i in ids if int(i) not in paths]
    if missing:
        raise BuildError(
            f"{len(missing)} images of the shard are no longer imported (e.g. id {missing[0]}); "
            "run the build again to plan it afresh."
        )
    root = Path(dataset.root)
    return [ImageFile(int(i), str(root / paths[int(i)])) for i in ids]
