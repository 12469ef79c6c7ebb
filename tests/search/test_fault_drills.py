"""Fault drills with real processes and kill -9, on a throwaway site of their own.

- `build_index` killed mid-way: nothing half-written is published; the same command resumes
  after the last complete shard and publishes exactly what an uninterrupted build does.
- The description worker killed mid-generation: the row is left "running"; once it has made
  no progress for TINYRAG_DESCRIPTION_STALL_SECONDS, the user's next poll hands it back to the
  queue and a new worker finishes it.

Each manage.py command runs as its own process against a SQLite file (the test process's
database is not visible to others), with the tiny CLIP and the fake OpenAI-compatible server.
The database restart drill, which needs a PostgreSQL server to restart, is
`benchmarks/fault_drills.py`.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.site import Site, wait_for
from tests.fixtures.tinyimagenet import build_tinyimagenet, write_zip

pytestmark = pytest.mark.slow


def kill9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


@pytest.fixture
def site(tmp_path, tiny_clip_dir) -> Site:
    """A site with a synthetic TinyImageNet of 7 classes x 60 training images imported."""
    from search.catalog.datasets.tinyimagenet import prepare

    data = build_tinyimagenet(train_per_class=60, val_per_class=1, test_count=1)
    site = Site(tmp_path / "site", TINYRAG_CLIP_MODEL=str(tiny_clip_dir))
    root = site.data_dir / "tiny-imagenet-200"
    prepare(root, write_zip(data, tmp_path / "tiny-imagenet-200.zip"))
    site.run("migrate", "--no-input")
    site.run("import_dataset", "--root", str(root), "--workers", "0")
    return site


BUILD = ("--batch-size", "4", "--shard-size", "8", "--workers", "0", "--verbosity", "1")


def published(index_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(index_dir / name / "ids.npy"), np.load(index_dir / name / "embeddings.npy")


def test_build_index_killed_mid_way_resumes_and_publishes_the_same_index(site):
    site.run("build_index", "--name", "clean", *BUILD)
    clean_ids, clean_vectors = published(site.index_dir, "clean")
    total_shards = -(-len(clean_ids) // 8)

    partial = site.index_dir / ".builds" / "drill.partial"
    build = site.start("build_index", "--name", "drill", *BUILD)
    wait_for(lambda: len(list(partial.glob("shard-*.npz"))) >= 3, "three shards on disk")
    kill9(build)
    kept = len(list(partial.glob("shard-*.npz")))
    assert 3 <= kept < total_shards, "the build must be killed mid-way"
    assert not (site.index_dir / "drill").exists()  # nothing published, not even half

    out = site.run("build_index", "--name", "drill", *BUILD)
    assert f"Resuming after {kept} complete shards ({kept * 8} images)." in out
    ids, vectors = published(site.index_dir, "drill")
    np.testing.assert_array_equal(ids, clean_ids)
    np.testing.assert_allclose(vectors, clean_vectors, atol=1e-6)
    assert not partial.exists()


CREATE_DESCRIPTION = """
from django.contrib.auth import get_user_model
from search.descriptions.services import request_description
from search.queries.services import text_search
user = get_user_model().objects.create_user("drill", password="drill-password-1")
query = text_search(user=user, text="lemon", top_k=3)
print(request_description(query=query, image_id=query.results.get(rank=1).image_id).pk)
"""

POLL = """
from search.descriptions.models import Description
from search.descriptions.services import with_stall_check
print(with_stall_check(Description.objects.get(pk={pk})).status)
"""


def test_worker_killed_mid_description_is_recovered_by_a_new_worker(site, fake_vlm_server):
    site.env.update(
        TINYRAG_VLM_BACKEND="openai",
        TINYRAG_VLM_URL=fake_vlm_server.base_url,
        TINYRAG_VLM_SERVED_MODEL="qwen2-vl-test",
        TINYRAG_DESCRIPTION_STALL_SECONDS="60",
        TINYRAG_INDEX_NAME="drill",
    )
    site.run("build_index", "--name", "drill", *BUILD)
    pk = int(site.run("shell", "-c", CREATE_DESCRIPTION).split()[-1])

    def row():
        return site.query("SELECT status, text, attempts FROM search_description WHERE id = ?", pk)[
            0
        ]

    fake_vlm_server.mode = "stall"  # the first words, then nothing: the worker is mid-stream
    worker = site.start("db_worker", "--interval", "0.1", "--no-reload")
    wait_for(lambda: fake_vlm_server.requests and row()[0] == "running", "generation to start")
    kill9(worker)
    status, _, attempts = row()
    assert (status, attempts) == ("running", 1)  # what a dead worker leaves behind

    assert site.run("shell", "-c", POLL.format(pk=pk)).split()[-1] == "running"  # not stalled yet
    # a minute without progress passes (the row's last sign of life is moved back instead)
    with sqlite3.connect(site.database) as db:
        db.execute(
            "UPDATE search_description SET updated_at = datetime(updated_at, '-61 seconds') "
            "WHERE id = ?",
            (pk,),
        )
    fake_vlm_server.mode = "stream"  # the server is healthy again
    assert site.run("shell", "-c", POLL.format(pk=pk)).split()[-1] == "queued"  # handed back

    site.run("db_worker", "--batch", "--interval", "0", "--no-startup-delay")
    assert row() == ("done", "A small red fish in water.", 2)
