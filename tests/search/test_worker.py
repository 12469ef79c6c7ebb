"""`manage.py db_worker` outlives a locked or vanished database: it logs, waits, and goes on
to run the tasks queued meanwhile (search/ops/management/commands/db_worker.py).

Real processes on a SQLite site of their own: the worker under test, and this test holding a
real lock on the file (sqlite3's BEGIN EXCLUSIVE) or taking the file away.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from django_tasks import task

from search.ops.management.commands.db_worker import RETRY_FIRST_S, RETRY_MAX_S, retry_delay
from tests.fixtures.site import ROOT, wait_for


@task()
def write_marker(path: str) -> str:
    """What the worker runs: proof that it went on after the database came back."""
    Path(path).write_text("ran", encoding="utf-8")
    return "ran"


ENQUEUE = "from tests.search.test_worker import write_marker; write_marker.enqueue({path!r})"


@pytest.fixture
def site(make_site):
    # 1 s busy timeout: the worker meets "database is locked" after a second, not twenty;
    # no reused connections: each loop opens the file again (a vanished file is seen at once).
    site = make_site(TINYRAG_SQLITE_TIMEOUT="1", DATABASE_CONN_MAX_AGE="0", TINYRAG_ENV_FILE="")
    site.run("migrate", "--no-input", "-v", "0")
    return site


def start_worker(site) -> tuple[subprocess.Popen, Path]:
    log = site.folder / "worker.log"
    worker = subprocess.Popen(
        site.command("db_worker", "--interval", "0.1", "--no-reload", "--no-startup-delay"),
        cwd=ROOT,
        env=site.env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return worker, log


def stop(worker: subprocess.Popen) -> None:
    worker.terminate()
    worker.wait(timeout=30)


def test_a_worker_waits_out_a_locked_database_and_runs_the_task_queued_meanwhile(site):
    marker = site.folder / "marker"
    worker, log = start_worker(site)
    try:
        wait_for(lambda: "Starting worker" in log.read_text(), "the worker to start")
        lock = sqlite3.connect(site.database, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # every other writer now waits, then fails
        met = "the database is unavailable (OperationalError: database is locked)"
        wait_for(lambda: met in log.read_text() or worker.poll() is not None, "the lock met")
        assert worker.poll() is None, log.read_text()  # the library's worker exits here
        lock.execute("COMMIT")
        lock.close()
        site.run("shell", "--no-imports", "-c", ENQUEUE.format(path=str(marker)))
        wait_for(marker.exists, "the worker to run the task", timeout=120)
        assert worker.poll() is None
    finally:
        stop(worker)
    assert "retrying in 0.5 s (attempt 1)" in log.read_text()


def test_a_worker_waits_for_a_database_file_that_went_away(site):
    """Not a lock ("unable to open database file"): the library re-raises every other
    OperationalError, which ended the worker process."""
    marker = site.folder / "marker"
    worker, log = start_worker(site)
    moved = site.folder / "moved.sqlite3"
    try:
        wait_for(lambda: "Starting worker" in log.read_text(), "the worker to start")
        site.database.rename(moved)
        (site.folder / "db.sqlite3").mkdir()  # a directory: SQLite cannot open it
        met = "the database is unavailable (OperationalError: unable to open database file)"
        wait_for(lambda: met in log.read_text() or worker.poll() is not None, "the file missed")
        assert worker.poll() is None, log.read_text()
        (site.folder / "db.sqlite3").rmdir()
        moved.rename(site.database)
        site.run("shell", "--no-imports", "-c", ENQUEUE.format(path=str(marker)))
        wait_for(marker.exists, "the worker to run the task", timeout=120)
    finally:
        stop(worker)


def test_batch_mode_still_ends_when_the_queue_is_empty(site):
    proc = subprocess.run(
        site.command("db_worker", "--batch", "--interval", "0", "--no-startup-delay"),
        cwd=ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No more tasks to run" in proc.stdout + proc.stderr


def test_the_back_off_doubles_up_to_its_ceiling():
    delays = [retry_delay(n) for n in range(1, 10)]
    assert delays[:4] == [RETRY_FIRST_S, 2 * RETRY_FIRST_S, 4 * RETRY_FIRST_S, 8 * RETRY_FIRST_S]
    assert max(delays) == RETRY_MAX_S
    assert delays == sorted(delays)
