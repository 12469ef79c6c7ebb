"""Bounded load on the production server: gunicorn on 127.0.0.1, locust headless.

    .venv/bin/python benchmarks/load.py [--clients 20] [--requests 2000] [--image-share 0.3]
                                        [--vectors 100000] [--database sqlite|postgres]
                                        [--tiny] [--workers 2 --threads 4]
    .venv/bin/python benchmarks/load.py --clients 1,5,10,20,40 --requests 1000   # the curves

Sets up a temporary site (one `Image` row per vector, a published flat index over
embedding-like vectors, the full-size CLIP ViT-B/32 architecture with random weights -- or the
tiny test CLIP with --tiny) on SQLite, or with --database postgres on a throwaway PostgreSQL
cluster started for the run (as .ci/run starts one, removed afterwards), serves it with
gunicorn under deploy/gunicorn.conf.py, and runs locust (benchmarks/locustfile.py) with a fixed
number of concurrent clients until `--requests` API searches (text and uploaded images, mixed)
have completed. A list of client counts runs one such load per count, one after the other,
against the same server.

Prints throughput, p50/p95/p99 latency per kind and overall, and the errors, per client
count; a table of them all; for 20 clients the issue's target line (TARGET_* below), met or
missed. Writes the figures as JSON, and with two or more client counts a picture of throughput
and latency against concurrency, under artifacts/ (load-<database>[-tiny].json / .png).
Exits 1 on any error (every response but 201 is one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._server import (  # noqa: E402
    bench_environment,
    embedding_like,
    gunicorn,
    postgres_cluster,
    publish_world,
    setup_django,
    text_search,
)

# The target row: 20 clients, 2,000 mixed API searches (30% images), 100k vectors,
# ViT-B/32, gunicorn 2 workers x 4 threads, on SQLite and on PostgreSQL.
TARGET_CLIENTS = 20
TARGET_SEARCHES_PER_S = 75.0
TARGET_P95_MS = 400.0
TARGET_ERRORS = 0
TARGET_RUN = {"requests": 2000, "image_share": 0.3, "vectors": 100_000, "workers": 2, "threads": 4}
MAX_CLIENTS = 500  # locust users are greenlets, but each holds a connection to gunicorn


@dataclass(frozen=True)
class Figures:
    """One kind of request (or all of them) at one client count."""

    requests: int
    errors: int
    searches_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Level:
    """One load: `clients` concurrent clients; `overall` and per request name."""

    clients: int
    overall: Figures
    kinds: dict[str, Figures] = field(default_factory=dict)


def percentile(histogram: Counter, fraction: float) -> float:
    """Locust's way: the smallest recorded (rounded) time with `fraction` of requests at or
    below it."""
    wanted, seen = fraction * sum(histogram.values()), 0
    for milliseconds in sorted(histogram):
        seen += histogram[milliseconds]
        if seen >= wanted:
            return milliseconds
    return float("nan")


def _figures(requests: int, errors: int, seconds: float, histogram: Counter) -> Figures:
    p50, p95, p99 = (percentile(histogram, f) for f in (0.5, 0.95, 0.99))
    rate = requests / seconds if seconds > 0 else float("nan")
    return Figures(requests, errors, rate, p50, p95, p99)


def level_figures(clients: int, entries: list[dict]) -> Level:
    """A Level from locust's final stats (its --json-file: one entry per request name, with
    `response_times` as {rounded ms: count}); throughput over the time from the first request's
    start to the last one's end."""
    kinds, overall = {}, Counter()
    for entry in entries:
        histogram = Counter({float(ms): n for ms, n in entry["response_times"].items()})
        overall.update(histogram)
        seconds = entry["last_request_timestamp"] - entry["start_time"]
        kinds[entry["name"]] = _figures(
            entry["num_requests"], entry["num_failures"], seconds, histogram
        )
    seconds = max(e["last_request_timestamp"] for e in entries) - min(
        e["start_time"] for e in entries
    )
    requests = sum(e["num_requests"] for e in entries)
    errors = sum(e["num_failures"] for e in entries)
    return Level(clients, _figures(requests, errors, seconds, overall), kinds)


def target_met(figures: Figures) -> bool:
    return (
        figures.searches_per_s >= TARGET_SEARCHES_PER_S
        and figures.p95_ms <= TARGET_P95_MS
        and figures.errors <= TARGET_ERRORS
    )


def target_line(level: Level, differences: list[str]) -> str:
    """The issue's target against a TARGET_CLIENTS level: its figures and met/missed, and
    how this run differs from the target row's configuration, if it does."""
    o = level.overall
    line = (
        f"target at {level.clients} clients: >= {TARGET_SEARCHES_PER_S:.0f} searches/s, "
        f"p95 <= {TARGET_P95_MS:.0f} ms, {TARGET_ERRORS} errors: "
        f"{'met' if target_met(o) else 'missed'} "
        f"({o.searches_per_s:.1f} searches/s, p95 {o.p95_ms:.0f} ms, {o.errors} errors)"
    )
    if differences:
        line += f"; not the target row's run: {', '.join(differences)}"
    return line


def differences_from_target(args: argparse.Namespace) -> list[str]:
    """What makes this run other than the issue's target row (empty: the same run)."""
    differences = [
        f"{name.replace('_', ' ')} {getattr(args, name):,}"
        for name, wanted in TARGET_RUN.items()
        if getattr(args, name) != wanted
    ]
    if args.tiny:
        differences.insert(0, "tiny CLIP")
    return differences


def print_level(level: Level) -> None:
    print(f"\n{level.clients} clients")
    print(f"{'':14s}{'requests':>9s}{'errors':>8s}{'req/s':>8s}{'p50':>8s}{'p95':>8s}{'p99':>8s}")
    for name, f in [*level.kinds.items(), ("all", level.overall)]:
        print(
            f"{name:14s}{f.requests:9d}{f.errors:8d}{f.searches_per_s:8.1f}"
            f"{f.p50_ms:6.0f}ms{f.p95_ms:6.0f}ms{f.p99_ms:6.0f}ms"
        )


def print_table(levels: list[Level]) -> None:
    print(f"\n{'clients':>8s}{'searches/s':>12s}{'p50':>8s}{'p95':>8s}{'p99':>8s}{'errors':>8s}")
    for level in levels:
        o = level.overall
        print(
            f"{level.clients:8d}{o.searches_per_s:12.1f}{o.p50_ms:6.0f}ms{o.p95_ms:6.0f}ms"
            f"{o.p99_ms:6.0f}ms{o.errors:8d}"
        )


def plot(levels: list[Level], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    clients = [level.clients for level in levels]
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    throughput, latency = figure.subplots(1, 2)
    throughput.plot(clients, [lv.overall.searches_per_s for lv in levels], "o-", label="all")
    for name in levels[0].kinds:
        rates = [lv.kinds[name].searches_per_s if name in lv.kinds else None for lv in levels]
        throughput.plot(clients, rates, "o--", alpha=0.6, label=name)
    throughput.axhline(TARGET_SEARCHES_PER_S, color="grey", linewidth=0.8, linestyle="--")
    throughput.annotate(
        f"target at {TARGET_CLIENTS} clients", (clients[0], TARGET_SEARCHES_PER_S),
        textcoords="offset points", xytext=(0, 4), fontsize="small", color="grey",
    )  # fmt: skip
    throughput.set(xlabel="concurrent clients", ylabel="searches/s", title="Throughput", ylim=0,
                   xticks=clients)  # fmt: skip
    throughput.legend(fontsize="small")
    for key, style in (("p50_ms", "o--"), ("p95_ms", "o-"), ("p99_ms", "o:")):
        latency.plot(clients, [getattr(lv.overall, key) for lv in levels], style, label=key[:3])
    latency.axhline(TARGET_P95_MS, color="grey", linewidth=0.8, linestyle="--")
    latency.annotate(
        "target p95", (clients[0], TARGET_P95_MS),
        textcoords="offset points", xytext=(0, 4), fontsize="small", color="grey",
    )  # fmt: skip
    latency.set(xlabel="concurrent clients", ylabel="ms", title="Latency (all searches)", ylim=0,
                xticks=clients)  # fmt: skip
    latency.legend(fontsize="small")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def warm_up(base: str, token: str, requests: int) -> None:
    """Concurrent searches, not counted, so that every gunicorn worker has served some."""

    def post(number: int) -> int:
        return text_search(base, token, f"warm up {number}", timeout=120)[0]

    with ThreadPoolExecutor(requests // 2) as pool:
        statuses = list(pool.map(post, range(requests)))
    if set(statuses) != {201}:
        raise RuntimeError(f"warm-up searches failed: {statuses}")


def run_locust(base: str, token: str, clients: int, args: argparse.Namespace, out: Path) -> list:
    """Locust's final stats, one entry per request name (its --json-file)."""
    env = {
        **os.environ,
        "TINYRAG_LOAD_TOKEN": token,
        "TINYRAG_LOAD_REQUESTS": str(args.requests),
        "TINYRAG_LOAD_IMAGE_SHARE": str(args.image_share),
    }
    stats = out / f"load-{clients}"
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(ROOT / "benchmarks" / "locustfile.py"),
        "--headless",
        "--users",
        str(clients),
        "--spawn-rate",
        str(clients),
        "--host",
        base,
        "--run-time",
        f"{args.max_minutes}m",  # a safety net; the locustfile stops after the last request
        "--only-summary",
        "--json-file",
        str(stats),
        "--loglevel",
        "WARNING",
    ]
    # prints locust's summary and error report; quiet it with the rest of its output
    subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL)
    return json.loads(stats.with_suffix(".json").read_text())


def client_counts(text: str) -> list[int]:
    """ "1,5,10,20,40" -> [1, 5, 10, 20, 40], in the order given; ValueError if not counts."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or not all(1 <= n <= MAX_CLIENTS for n in counts):
        raise ValueError(f"client counts must be whole numbers 1..{MAX_CLIENTS}, comma-separated")
    return counts


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: the server and the cluster are stopped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--clients",
        default=str(TARGET_CLIENTS),
        help=f"Concurrent clients, or a comma-separated list of counts to run one after the "
        f"other, e.g. 1,5,10,20,40 ({TARGET_CLIENTS}).",
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="Searches per client count (2000)."
    )
    parser.add_argument("--image-share", type=float, default=0.3, help="Image searches (0.3).")
    parser.add_argument("--vectors", type=int, default=100_000, help="Index size (100k).")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="SQLite file, or a throwaway PostgreSQL cluster started for the run (sqlite).",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2).")
    parser.add_argument("--threads", type=int, default=4, help="Threads per worker (4).")
    parser.add_argument("--tiny", action="store_true", help="The tiny test CLIP (smoke runs).")
    parser.add_argument("--max-minutes", type=int, default=30, help="Give up a load after (30).")
    parser.add_argument(
        "--out",
        type=Path,
        help="Where the JSON (and the picture, .png beside it) go "
        "(default: artifacts/load-<database>[-tiny].json).",
    )
    args = parser.parse_args()
    try:
        counts = client_counts(args.clients)
    except ValueError as exc:
        parser.error(f"--clients {args.clients!r}: {exc}")
    if args.requests < 1 or not 0 <= args.image_share <= 1 or args.vectors < 1:
        parser.error("--requests and --vectors must be positive, --image-share in 0..1")
    out = (
        args.out or ROOT / "artifacts" / f"load-{args.database}{'-tiny' if args.tiny else ''}.json"
    )

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinyrag-load-")))
            extra = {}
            if args.database == "postgres":
                extra["DATABASE_URL"] = stack.enter_context(postgres_cluster()).url
            levels = run(args, counts, workdir, extra)
    except KeyboardInterrupt:  # everything above is stopped and removed by now
        print("interrupted", file=sys.stderr)
        return 130
    return report(args, levels, out)


def run(args: argparse.Namespace, counts: list[int], workdir: Path, extra: dict) -> list[Level]:
    from tests.fixtures.models import TINY_CLIP, VIT_B_32, build_clip

    arch = TINY_CLIP if args.tiny else VIT_B_32
    build_clip(workdir / "clip", arch)
    env = bench_environment(workdir, workdir / "clip", **extra)
    setup_django(env)
    publish_world(
        embedding_like(args.vectors, arch.projection_dim),
        workdir,
        model_id=env["TINYRAG_CLIP_MODEL"],
    )
    from django.contrib.auth import get_user_model
    from django.db import connection, connections
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("load", password="load-password-123")
    token = Token.objects.create(user=user).key
    print(
        f"{','.join(map(str, counts))} clients, {args.requests} searches each "
        f"({args.image_share:.0%} images), {args.vectors:,} vectors, "
        f"{'tiny' if args.tiny else 'ViT-B/32'} CLIP, {connection.vendor}, gunicorn "
        f"{args.workers} workers x {args.threads} threads, {os.cpu_count()} CPUs"
    )
    connections.close_all()  # this process is done with the database; the server takes over
    levels = []
    with gunicorn(env, workers=args.workers, threads=args.threads) as base:
        warm_up(base, token, 4 * args.workers * args.threads)
        for clients in counts:
            level = level_figures(clients, run_locust(base, token, clients, args, workdir))
            print_level(level)
            levels.append(level)
    return levels


def report(args: argparse.Namespace, levels: list[Level], out: Path) -> int:
    """The table, the target line, the JSON and the picture; 1 when any search failed."""
    if len(levels) > 1:
        print_table(levels)
    differences = differences_from_target(args)
    for level in levels:
        if level.clients == TARGET_CLIENTS:
            print(target_line(level, differences))
    model = "tiny CLIP" if args.tiny else "CLIP ViT-B/32"
    title = (
        f"{model}, {args.vectors:,} vectors, {args.database}, gunicorn {args.workers} x "
        f"{args.threads}, {args.requests} searches per point ({args.image_share:.0%} images), "
        f"{os.cpu_count()} CPUs"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "run": {
                    "database": args.database,
                    "model": model,
                    **{name: getattr(args, name) for name in TARGET_RUN},
                    "cpus": os.cpu_count(),
                },
                "target": {
                    "clients": TARGET_CLIENTS,
                    "searches_per_s": TARGET_SEARCHES_PER_S,
                    "p95_ms": TARGET_P95_MS,
                    "errors": TARGET_ERRORS,
                    "not_the_target_run": differences,
                },
                "levels": [asdict(level) for level in levels],
            },
            indent=2,
        )
    )
    print(f"Wrote {out}")
    if len(levels) > 1:
        picture = out.with_suffix(".png")
        plot(levels, picture, title)
        print(f"Wrote {picture}")
    errors = sum(level.overall.errors for level in levels)
    print(f"errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
