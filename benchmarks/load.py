"""Bounded load on the production server: gunicorn on 127.0.0.1, locust headless.

    .venv/bin/python benchmarks/load.py [--clients 20] [--requests 2000] [--image-share 0.3]
                                        [--vectors 100000] [--tiny] [--workers 2 --threads 4]

Sets up a temporary site (SQLite, one `Image` row per vector, a published flat index over
embedding-like vectors, the full-size CLIP ViT-B/32 architecture with random weights -- or
the tiny test CLIP with --tiny), serves it with gunicorn under deploy/gunicorn.conf.py, and
runs locust (benchmarks/locustfile.py) with a fixed number of concurrent clients until the
given number of API searches (text and uploaded images, mixed) has completed. Prints
throughput, p50/p95/p99 latency per kind and overall, and the error count; exits 1 on any
error (every response but 201 is one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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


def warm_up(base: str, token: str, requests: int) -> None:
    """Concurrent searches, not counted, so that every gunicorn worker has served some."""

    def post(number: int) -> int:
        return text_search(base, token, f"warm up {number}", timeout=120)[0]

    with ThreadPoolExecutor(requests // 2) as pool:
        statuses = list(pool.map(post, range(requests)))
    if set(statuses) != {201}:
        raise RuntimeError(f"warm-up searches failed: {statuses}")


def run_locust(base: str, token: str, args: argparse.Namespace, out: Path) -> list[dict]:
    """Locust's final stats, one entry per request name (its --json-file)."""
    env = {
        **os.environ,
        "TINYRAG_LOAD_TOKEN": token,
        "TINYRAG_LOAD_REQUESTS": str(args.requests),
        "TINYRAG_LOAD_IMAGE_SHARE": str(args.image_share),
    }
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(ROOT / "benchmarks" / "locustfile.py"),
        "--headless",
        "--users",
        str(args.clients),
        "--spawn-rate",
        str(args.clients),
        "--host",
        base,
        "--run-time",
        f"{args.max_minutes}m",  # a safety net; the locustfile stops after the last request
        "--only-summary",
        "--json-file",
        str(out / "load"),
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(command, env=env, check=False)  # prints locust's summary and error report
    return json.loads((out / "load.json").read_text())


def percentile(histogram: Counter, fraction: float) -> float:
    """Locust's way: the smallest recorded (rounded) time with `fraction` of requests at or
    below it."""
    wanted, seen = fraction * sum(histogram.values()), 0
    for milliseconds in sorted(histogram):
        seen += histogram[milliseconds]
        if seen >= wanted:
            return milliseconds
    return float("nan")


def report(entries: list[dict]) -> int:
    """Print throughput, latency percentiles and errors per kind and overall; the errors."""
    rows = []
    for entry in entries:
        histogram = Counter({float(ms): n for ms, n in entry["response_times"].items()})
        rows.append((entry["name"], entry, histogram))
    overall = Counter()
    for _, _, histogram in rows:
        overall.update(histogram)
    everything = {
        "num_requests": sum(e["num_requests"] for e in entries),
        "num_failures": sum(e["num_failures"] for e in entries),
        "start_time": min(e["start_time"] for e in entries),
        "last_request_timestamp": max(e["last_request_timestamp"] for e in entries),
    }
    rows.append(("all", everything, overall))
    print(f"\n{'':14s}{'requests':>9s}{'errors':>8s}{'req/s':>8s}{'p50':>8s}{'p95':>8s}{'p99':>8s}")
    for name, entry, histogram in rows:
        seconds = entry["last_request_timestamp"] - entry["start_time"]
        p50, p95, p99 = (percentile(histogram, f) for f in (0.5, 0.95, 0.99))
        print(
            f"{name:14s}{entry['num_requests']:9d}{entry['num_failures']:8d}"
            f"{entry['num_requests'] / seconds:8.1f}{p50:6.0f}ms{p95:6.0f}ms{p99:6.0f}ms"
        )
    print(f"errors: {everything['num_failures']}")
    return everything["num_failures"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients (20).")
    parser.add_argument("--requests", type=int, default=2000, help="Searches in all (2000).")
    parser.add_argument("--image-share", type=float, default=0.3, help="Image searches (0.3).")
    parser.add_argument("--vectors", type=int, default=100_000, help="Index size (100k).")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2).")
    parser.add_argument("--threads", type=int, default=4, help="Threads per worker (4).")
    parser.add_argument("--tiny", action="store_true", help="The tiny test CLIP (smoke runs).")
    parser.add_argument("--max-minutes", type=int, default=30, help="Give up after (30).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tinyrag-load-") as tmp:
        workdir = Path(tmp)
        from tests.fixtures.models import TINY_CLIP, VIT_B_32, build_clip

        arch = TINY_CLIP if args.tiny else VIT_B_32
        build_clip(workdir / "clip", arch)
        env = bench_environment(workdir, workdir / "clip")
        setup_django(env)
        publish_world(
            embedding_like(args.vectors, arch.projection_dim),
            workdir,
            model_id=env["TINYRAG_CLIP_MODEL"],
        )

        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user = get_user_model().objects.create_user("load", password="load-password-123")
        token = Token.objects.create(user=user).key
        print(
            f"{args.clients} clients, {args.requests} searches ({args.image_share:.0%} images), "
            f"{args.vectors:,} vectors, {'tiny' if args.tiny else 'ViT-B/32'} CLIP, gunicorn "
            f"{args.workers} workers x {args.threads} threads, {os.cpu_count()} CPUs"
        )
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            warm_up(base, token, 4 * args.workers * args.threads)
            entries = run_locust(base, token, args, workdir)
        return 1 if report(entries) else 0


if __name__ == "__main__":
    sys.exit(main())
