"""build_index --distributed with real worker processes (`manage.py worker`) sharing the site's
database (SQLite, or PostgreSQL when the suite runs on it) and its shard folder: two workers
make the index one process makes, and with one killed mid-shard (SIGKILL, as a machine lost)
its shard goes to the other and the same index is published."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.site import ROOT, Site, index_tiny_imagenet, tiny_models, wait_for

pytestmark = pytest.mark.slow

STALL_SECONDS = 3
SHARD_ARGS = ("--shard-size", "4", "--batch-size", "2")


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_clip_dir):
    folder = tmp_path_factory.mktemp("distributed")
    site = Site(
        folder / "site",
        database="suite",
        **tiny_models(tiny_clip_dir),
        TINYRAG_SHARD_DIR=str(folder / "shared-shards"),
        TINYRAG_SHARD_STALL_SECONDS=str(STALL_SECONDS),
    )
    try:
        # large training images: each takes ~20 ms to decode, so a shard of 4 lasts long
        # enough to catch its worker in it
        index_tiny_imagenet(site, folder, train_per_class=12, train_size=1024)
        yield site
    finally:
        site.close()


class Worker:
    """`manage.py worker` as its own process; its output in a file."""

    def __init__(self, site: Site, name: str):
        self.log = site.folder / f"{name}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                site.command("worker", "--interval", "0.05"),
                cwd=ROOT,
                env=site.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ready, f"{name} to warm up")

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        said = self.log.read_text()
        return "warm-up: ready" in said or "but not ready" in said

    @property
    def name_suffix(self) -> str:
        return f":{self.process.pid}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen one would not hear SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_build(site: Site, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        site.command("build_index", "--name", name, "--distributed", *SHARD_ARGS),
        cwd=ROOT,
        env=site.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(build: subprocess.Popen) -> str:
    out, _ = build.communicate(timeout=180)
    assert build.returncode == 0, out
    return out


def assert_same_index(site: Site, name: str) -> None:
    """Same ids as the one-process build `tiny`, each vector within cosine 0.9999 of its."""
    ids, vectors = (np.load(site.index_dir / name / f) for f in ("ids.npy", "embeddings.npy"))
    ref_ids, ref = (np.load(site.index_dir / "tiny" / f) for f in ("ids.npy", "embeddings.npy"))
    assert ids.tolist() == ref_ids.tolist()
    cosine = (vectors * ref).sum(1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(ref, axis=1)
    )
    assert cosine.min() >= 0.9999


def shards(site: Site, name: str) -> list[tuple]:
    return site.query(
        "SELECT number, status, attempts, worker FROM catalog_buildshard WHERE index_name = ? "
        "ORDER BY number",
        name,
    )


def test_two_worker_processes_make_the_index_one_process_makes(site: Site):
    workers = [Worker(site, "worker-1"), Worker(site, "worker-2")]
    try:
        out = finished(start_build(site, "two"))
    finally:
        for worker in workers:
            worker.stop()

    assert "Published index 'two'" in out
    assert_same_index(site, "two")
    rows = shards(site, "two")
    train = len(np.load(site.index_dir / "tiny" / "ids.npy"))
    assert len(rows) == (train + 3) // 4  # in shards of 4
    assert {status for _, status, _, _ in rows} == {"done"}
    takers = {worker.rsplit(":", 1)[1] for *_, worker in rows}
    assert takers == {str(w.process.pid) for w in workers}  # both took shards


def test_a_worker_killed_mid_shard_leaves_it_to_another_and_the_same_index_is_published(
    site: Site,
):
    doomed = Worker(site, "doomed")
    build = start_build(site, "drill")
    survivor = None
    try:
        (killed,) = wait_for(lambda: kill_mid_shard(site, doomed), "the worker to be mid-shard")
        survivor = Worker(site, "survivor")
        out = finished(build)
    finally:
        for worker in (doomed, survivor):
            if worker is not None:
                worker.stop()
        if build.poll() is None:
            build.kill()

    assert "Published index 'drill'" in out
    assert_same_index(site, "drill")
    rows = {
        number: (status, attempts, worker)
        for number, status, attempts, worker in shards(site, "drill")
    }
    status, attempts, worker = rows[killed]
    # taken a second time, after STALL_SECONDS of silence, by the survivor
    assert (status, attempts) == ("done", 2)
    assert worker.endswith(survivor.name_suffix)
    assert {s for s, _, _ in rows.values()} == {"done"}


def kill_mid_shard(site: Site, worker: Worker) -> list[int]:
    """Freeze the worker; if it has claimed a shard it has not saved, kill it (-9) there and
    return [the shard's number], else let it go on and return []."""
    os.kill(worker.process.pid, signal.SIGSTOP)
    running = [
        number
        for number, status, _, taker in shards(site, "drill")
        if status == "running" and taker.endswith(worker.name_suffix)
    ]
    folder = Path(site.env["TINYRAG_SHARD_DIR"]) / "drill.partial"
    unsaved = [n for n in running if not (folder / f"shard-{n:05d}.npz").exists()]
    if unsaved:
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        return unsaved[:1]
    os.kill(worker.process.pid, signal.SIGCONT)
    time.sleep(0.002)
    return []
