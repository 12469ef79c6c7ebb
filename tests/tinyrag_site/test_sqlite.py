"""The development database (SQLite, no DATABASE_URL) runs in write-ahead-log mode with a busy
timeout, so a long read (a page counting 120k rows) never locks the worker's writes out.

Each test runs manage.py in a fresh process against a SQLite file of its own, as deploy/dev.sh
does; the file is then opened with the sqlite3 module, an independent route to its state.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRAGMAS = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    for name in ('journal_mode', 'synchronous', 'busy_timeout'):\n"
    "        c.execute('PRAGMA ' + name)\n"
    "        print(name, c.fetchone()[0])\n"
)


def dev_manage(data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """manage.py with development settings and no DATABASE_URL: the SQLite file in data_dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY"}
    }
    env.update(DEBUG="1", TINYRAG_DATA_DIR=str(data_dir), TINYRAG_ENV_FILE="")
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_development_database_is_in_wal_mode_with_a_busy_timeout(tmp_path):
    proc = dev_manage(tmp_path, "shell", "--no-imports", "-c", PRAGMAS)
    assert proc.returncode == 0, proc.stderr
    # synchronous: 1 is NORMAL (https://sqlite.org/pragma.html#pragma_synchronous)
    assert proc.stdout.split() == [
        "journal_mode",
        "wal",
        "synchronous",
        "1",
        "busy_timeout",
        "20000",
    ]
    # WAL is a property of the file: another program opening it sees it too.
    with sqlite3.connect(tmp_path / "tinyrag.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_write_commits_while_another_connection_holds_a_long_read(tmp_path):
    """The issue's crash: a page's slow count held the file while db_worker wrote. With a
    rollback journal the writer cannot commit until every reader is done; with WAL it can."""
    setup = dev_manage(tmp_path, "shell", "--no-imports", "-c", PRAGMAS)
    assert setup.returncode == 0, setup.stderr
    database = tmp_path / "tinyrag.sqlite3"
    with sqlite3.connect(database, isolation_level=None) as reader:
        reader.execute("CREATE TABLE probe (n INTEGER)")
        reader.execute("INSERT INTO probe VALUES (1)")
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM probe").fetchone()[0] == 1  # read lock held
        write = (
            "from django.db import connection, transaction\n"
            "with transaction.atomic(), connection.cursor() as c:\n"
            "    c.execute('INSERT INTO probe VALUES (2)')\n"
            "print('committed')\n"
        )
        proc = dev_manage(tmp_path, "shell", "--no-imports", "-c", write, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "committed"
        # The reader's snapshot is unchanged until it ends its transaction.
        assert reader.execute("SELECT count(*) FROM probe").fetchone()[0] == 1
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM probe").fetchone()[0] == 2
