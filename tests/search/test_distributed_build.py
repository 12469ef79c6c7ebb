"""build_index --distributed: shards enqueued as tasks, embedded by whichever worker takes
them, merged and published by the command; a silent worker's shard goes to the next one, a
failed shard stops the build with its reason, and the command run again goes on.

Here the task worker runs in this process between the command's looks at the shards (its
`wait`); tests/tinyrag_site/test_distributed_workers.py runs real worker processes on a site
of their own and kills one."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from search.catalog.models import BuildShard
from search.errors import ApplicationError
from search.index import distributed
from search.index.build import BuildOptions
from search.index.distributed import SHARDS, build_distributed
from search.ops import jobs
from tests.fixtures.backends import on_rq, queued_tasks, run_queued_tasks

# transactional: the worker run here closes a connection that is inside a transaction (on
# PostgreSQL, the test's own), as close_old_connections does with any such connection
pytestmark = pytest.mark.django_db(transaction=True)

TASK = "search.index.tasks.embed_shard_task"


@pytest.fixture(autouse=True)
def _bounded_looks(monkeypatch):
    """A build that would wait for ever (a shard left without a task) fails the test instead."""
    looks = []

    def look(*args):
        looks.append(1)
        assert len(looks) <= 10, "the build kept waiting for shards nobody works on"
        return real_look(*args)

    real_look = distributed._look
    monkeypatch.setattr(distributed, "_look", look)


def options(name: str = "dist", **kwargs) -> BuildOptions:
    return BuildOptions(name=name, batch_size=2, workers=0, shard_target=4, **kwargs)


def published(name: str) -> tuple[np.ndarray, np.ndarray]:
    folder = settings.TINYRAG_INDEX_DIR / name
    return np.load(folder / "ids.npy"), np.load(folder / "embeddings.npy")


def assert_same_index(name: str, reference: str) -> None:
    """Same ids, in order, and each vector within cosine 0.9999 of the reference build's."""
    ids, vectors = published(name)
    ref_ids, ref_vectors = published(reference)
    assert ids.tolist() == ref_ids.tolist()
    cosine = (vectors * ref_vectors).sum(1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(ref_vectors, axis=1)
    )
    assert cosine.min() >= 0.9999


@pytest.fixture
def local_build(search_index):
    """The synthetic train split published as `tiny` by one process (conftest's build)."""
    return search_index


def test_shards_embedded_by_workers_make_the_index_one_process_makes(local_build):
    seen = {}

    def wait(_seconds):
        rows = BuildShard.objects.order_by("number")
        seen["rows"] = list(rows.values_list("number", "images", "status"))
        seen["tasks"] = queued_tasks(TASK)
        tasks = DBTaskResult.objects.filter(task_path=TASK)  # the database backend's rows
        seen["priorities"] = set(tasks.values_list("priority", flat=True))
        run_queued_tasks()

    said = []
    manifest = build_distributed(options(), wait=wait, log=said.append)

    train = len(published("tiny")[0])
    shards = (train + 3) // 4
    assert seen["rows"] == [
        (n, min(4, train - 4 * n), "queued") for n in range(shards)
    ]  # every shard queued before any worker ran
    assert seen["tasks"] == shards  # a task for each
    # behind people's descriptions where the backend has priorities (RQ has none: in order)
    assert seen["priorities"] == (set() if on_rq() else {distributed.SHARD_PRIORITY})
    assert f"Queued {shards} of {shards} shards ({train:,} images to embed)" in said[0]
    assert (manifest.count, manifest.embedded, manifest.reused) == (train, train, 0)
    assert_same_index("dist", "tiny")
    # the rows stay as the record: every shard done, by this process's worker
    done = BuildShard.objects.values_list("status", "attempts", "worker")
    assert set(done) == {("done", 1, distributed.worker_name())}


def test_the_command_line_builds_with_distributed(local_build, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "pause", run_queued_tasks)

    call_command(
        "build_index", "--name", "dist", "--distributed", "--shard-size", "4",
        "--batch-size", "2",
    )  # fmt: skip

    assert_same_index("dist", "tiny")
    assert "Published index 'dist'" in capsys.readouterr().out


def test_a_silent_workers_shard_goes_to_the_next_worker(local_build):
    looks = []

    def wait(_seconds):
        looks.append(dict(BuildShard.objects.values_list("number", "status")))
        if len(looks) == 1:
            # a worker took shard 0 and died: its row running, silent past the stall period
            assert jobs.claim(SHARDS, BuildShard.objects.get(number=0).pk, worker="gone:1")
            silent = timezone.now() - timedelta(seconds=settings.TINYRAG_SHARD_STALL_SECONDS + 1)
            BuildShard.objects.filter(number=0).update(updated_at=silent)
        run_queued_tasks()  # shard 0's first task finds it taken and leaves it

    build_distributed(options(), wait=wait)

    assert len(looks) == 2  # the second look found shard 0 queued again, with a new task
    assert looks[1][0] == "queued"
    assert all(status == "done" for n, status in looks[1].items() if n)
    shard = BuildShard.objects.get(number=0)
    assert (shard.status, shard.attempts, shard.worker) == ("done", 2, distributed.worker_name())
    assert_same_index("dist", "tiny")


def test_a_shard_silent_three_times_stops_the_build(local_build):
    def wait(_seconds):
        shard = BuildShard.objects.get(number=0)
        if shard.status == "queued":  # every worker that takes it dies
            assert jobs.claim(SHARDS, shard.pk, worker=f"gone:{shard.attempts + 1}")
            silent = timezone.now() - timedelta(seconds=settings.TINYRAG_SHARD_STALL_SECONDS + 1)
            BuildShard.objects.filter(pk=shard.pk).update(updated_at=silent)
        run_queued_tasks()

    with pytest.raises(ApplicationError, match="shard 0 of index 'dist' failed on gone:3: Its "
                       "worker stopped making progress 3 times"):  # fmt: skip
        build_distributed(options(), wait=wait)

    assert not (settings.TINYRAG_INDEX_DIR / "dist").exists()  # nothing published
    assert BuildShard.objects.exclude(number=0).filter(status="done").count() >= 1  # kept


def test_a_worker_with_another_clip_fails_the_build_and_the_rerun_goes_on(local_build):
    def wait_with_another_model(_seconds):
        # the workers' machine was set up with another CLIP: it must not mix its vectors in
        work_file = next(settings.TINYRAG_INDEX_DIR.glob(".builds/dist.partial/work.json"))
        work = json.loads(work_file.read_text())
        work_file.write_text(json.dumps({**work, "model_id": "someone/else-clip"}))
        run_queued_tasks()

    with pytest.raises(ApplicationError, match="is not the build's") as failed:
        build_distributed(options(), wait=wait_with_another_model)
    assert "set TINYRAG_CLIP_MODEL" in str(failed.value)
    assert "run the same command again to go on" in str(failed.value)
    assert not (settings.TINYRAG_INDEX_DIR / "dist").exists()

    said = []
    build_distributed(options(), wait=run_queued_tasks, log=said.append)  # the machine fixed

    shards = BuildShard.objects.count()
    assert f"Queued {shards} of {shards} shards" in said[0]  # the failed ones tried again
    assert set(BuildShard.objects.values_list("status", "error")) == {("done", "")}
    assert_same_index("dist", "tiny")


def test_a_worker_that_cannot_see_the_shard_folder_says_so(local_build, tmp_path):
    def wait(_seconds):
        settings.TINYRAG_SHARD_DIR = str(tmp_path / "not-shared")  # this worker's own disk
        try:
            run_queued_tasks()
        finally:
            settings.TINYRAG_SHARD_DIR = ""

    with pytest.raises(ApplicationError, match="cannot read the build's shard folder") as failed:
        build_distributed(options(), wait=wait)
    assert "TINYRAG_SHARD_DIR must name the storage every machine of the build shares" in str(
        failed.value
    )


def test_the_command_stopped_before_the_merge_publishes_when_run_again(local_build):
    def stopped(_seconds):
        run_queued_tasks()
        raise KeyboardInterrupt  # Ctrl-C while the workers finished

    with pytest.raises(KeyboardInterrupt):
        build_distributed(options(), wait=stopped)
    assert not (settings.TINYRAG_INDEX_DIR / "dist").exists()

    said = []
    waits = []
    build_distributed(options(), wait=waits.append, log=said.append)

    shards = BuildShard.objects.count()
    assert waits == []  # every shard was saved: nothing to wait for
    assert f"Resuming after {shards} complete shards" in said[0]
    assert f"Queued 0 of {shards} shards" in said[1]
    assert_same_index("dist", "tiny")


def test_a_distributed_build_with_nothing_new_reuses_every_vector(local_build):
    waits = []

    manifest = build_distributed(options(name="tiny"), wait=waits.append)

    assert (manifest.reused, manifest.embedded) == (manifest.count, 0)
    assert waits == []
    assert BuildShard.objects.count() == 0


def test_two_indexes_of_the_same_images_keep_their_own_shards(local_build):
    build_distributed(options(name="one"), wait=run_queued_tasks)
    build_distributed(options(name="two"), wait=run_queued_tasks)

    per_index = {
        name: set(BuildShard.objects.filter(index_name=name).values_list("status", flat=True))
        for name in ("one", "two")
    }
    assert per_index == {"one": {"done"}, "two": {"done"}}
    assert_same_index("one", "tiny")
    assert_same_index("two", "tiny")


def test_a_build_nobody_works_on_asks_for_a_worker_once(local_build, monkeypatch):
    monkeypatch.setattr(distributed, "QUIET_SECONDS", 0)
    waits = []

    def wait(_seconds):
        waits.append(1)
        if len(waits) == 3:
            run_queued_tasks()  # a worker starts at last

    said = []
    build_distributed(options(), wait=wait, log=said.append)

    asked = [line for line in said if "is a `manage.py worker` running" in line]
    assert len(asked) == 1
    assert_same_index("dist", "tiny")
