"""Fault drill: PostgreSQL restarted under load; requests fail cleanly, then recover.

    .venv/bin/python benchmarks/fault_drills.py [--clients 8] [--down 4] [--full]

Starts a throwaway PostgreSQL cluster (the Debian server binaries, as .ci/run does), a site on
it (tiny CLIP, or ViT-B/32 with --full; an index of 10,000 embedding-like vectors) under
gunicorn, and clients searching through the API without pause. Then it stops PostgreSQL for
--down seconds and starts it again, the app untouched, and prints what the clients saw before,
during and after: during the outage every answer must be a 503 in the API's error format
(never a 500, never a dropped connection), and afterwards searches must succeed again without
restarting anything. Exits 1 when that is not what happened.

The other drills (kill -9 of build_index and of the description worker) are tests:
tests/search/test_fault_drills.py. A corrupt index.faiss: tests/tinyrag_site/test_health.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._server import (  # noqa: E402
    bench_environment,
    embedding_like,
    gunicorn,
    publish_world,
    setup_django,
    text_search,
)
from tests.fixtures.http import unused_port  # noqa: E402


class Postgres:
    """A throwaway cluster in a temporary folder, run as the postgres user when we are root."""

    def __init__(self, folder: Path):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin, self.folder, self.port = bins[-1].parent, folder, unused_port()
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_pg, str(self.bin / tool), *args],
            cwd=self.folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def init(self) -> str:
        self._run("initdb", "-D", "data", "-U", "postgres", "--auth-host=trust", "--no-sync")
        self.start()
        self._run(
            "psql", "-h", str(self.folder), "-p", str(self.port), "-U", "postgres", "-q",
            "-c", "CREATE DATABASE tinyrag",
        )  # fmt: skip
        return f"postgres://postgres@127.0.0.1:{self.port}/tinyrag"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.folder} -c fsync=off"
        )
        self._run("pg_ctl", "-D", "data", "-l", "server.log", "-w", "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", "data", "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[tuple[Postgres, str]]:
    folder = Path(tempfile.mkdtemp(prefix="tinyrag-pg-"))
    server = Postgres(folder)
    try:
        yield server, server.init()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def search(base: str, token: str) -> str:
    """One API text search; what came back, as 'HTTP 201', 'HTTP 503 unavailable', or the
    connection error."""
    status, detail = text_search(base, token, "lemon", top_k=5, timeout=30)
    return f"HTTP {status} {detail}".strip() if status else f"connection error: {detail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients (8).")
    parser.add_argument("--down", type=float, default=4.0, help="Seconds PostgreSQL is down.")
    parser.add_argument("--full", action="store_true", help="ViT-B/32 instead of the tiny CLIP.")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="tinyrag-drill-") as tmp,
        throwaway_postgres() as (postgres, url),
    ):
        workdir = Path(tmp)
        from tests.fixtures.models import TINY_CLIP, VIT_B_32, build_clip

        arch = VIT_B_32 if args.full else TINY_CLIP
        build_clip(workdir / "clip", arch)
        env = bench_environment(workdir, workdir / "clip", DATABASE_URL=url)
        setup_django(env)
        publish_world(
            embedding_like(10_000, arch.projection_dim), workdir, model_id=str(workdir / "clip")
        )
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user = get_user_model().objects.create_user("drill", password="drill-password-1")
        token = Token.objects.create(user=user).key

        seen: list[tuple[str, str]] = []  # (phase, outcome)
        phase = ["before"]
        stop = threading.Event()

        def client():
            while not stop.is_set():
                outcome_phase = phase[0]
                outcome = search(base, token)
                seen.append((outcome_phase if outcome_phase == phase[0] else "edge", outcome))

        with gunicorn(env, workers=2, threads=4) as base:
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            time.sleep(3)
            phase[0] = "down"
            postgres.stop()
            stopped = time.monotonic()
            time.sleep(args.down)
            phase[0] = "restarting"
            postgres.start()
            phase[0] = "after"
            restarted = time.monotonic()
            first_ok = None
            while time.monotonic() - restarted < 10:
                if first_ok is None and any(o == "HTTP 201" for p, o in seen[-20:] if p == "after"):
                    first_ok = time.monotonic() - restarted
                time.sleep(0.05)
            stop.set()
            for thread in threads:
                thread.join()

    print(f"PostgreSQL down for {restarted - stopped:.1f} s under {args.clients} clients "
          f"({'ViT-B/32' if args.full else 'tiny'} CLIP, gunicorn 2 x 4)")  # fmt: skip
    for name in ("before", "down", "restarting", "edge", "after"):
        counts = Counter(o for p, o in seen if p == name)
        print(f"  {name:11s}" + ", ".join(f"{n} x {o}" for o, n in counts.most_common()))
    print(f"  first success {first_ok:.2f} s after PostgreSQL was back" if first_ok else "")

    bad = [o for p, o in seen if o != "HTTP 201" and not o.startswith("HTTP 503 unavailable")]
    after = [o for p, o in seen if p == "after"]
    failed_after = sum(o != "HTTP 201" for o in after[len(after) // 2 :])
    ok = not bad and first_ok is not None and failed_after == 0
    print("drill passed" if ok else f"drill FAILED: {Counter(bad)}; late failures {failed_after}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
