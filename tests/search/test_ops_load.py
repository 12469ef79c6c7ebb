"""benchmarks/load.py's figures and verdict, from hand-made locust stats, and the throwaway
PostgreSQL cluster of benchmarks/_server.py that `load.py --database postgres` runs on.

Expected figures are worked out by hand from the histograms below (locust's percentiles: the
smallest recorded time with that fraction of requests at or below it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import pytest

from benchmarks import load
from benchmarks._server import postgres_cluster


def entry(name: str, times: dict[int, int], failures: int, start: float, end: float) -> dict:
    """One request name in locust's --json-file shape (the fields load.py reads)."""
    return {
        "name": name,
        "num_requests": sum(times.values()),
        "num_failures": failures,
        "response_times": {str(ms): n for ms, n in times.items()},
        "start_time": start,
        "last_request_timestamp": end,
    }


# 14 text searches over 2 s and 6 image searches over 3 s: 20 in the 3 s from 100.0 to 103.0.
ENTRIES = [
    entry("search/text", {100: 7, 200: 6, 900: 1}, 0, 100.5, 102.5),
    entry("search/image", {300: 5, 400: 1}, 1, 100.0, 103.0),
]


def run_args(**changes) -> argparse.Namespace:
    values = {**load.TARGET_RUN, "tiny": False, "database": "sqlite", **changes}
    return argparse.Namespace(**values)


def test_a_level_has_figures_per_kind_and_overall():
    level = load.level_figures(20, ENTRIES)
    assert level.clients == 20
    text, image = level.kinds["search/text"], level.kinds["search/image"]
    # text: 14 over 2 s; p50 = 7th of 14 -> 100, p95 = 13.3th -> the 14th -> 900
    assert (text.requests, text.errors, text.searches_per_s) == (14, 0, 7.0)
    assert (text.p50_ms, text.p95_ms, text.p99_ms) == (100, 900, 900)
    assert (image.requests, image.errors, image.searches_per_s) == (6, 1, 2.0)
    assert (image.p50_ms, image.p95_ms) == (300, 400)
    # all: 20 over 3 s; sorted 100 x7, 200 x6, 300 x5, 400 x1, 900 x1:
    # p50 = 10th -> 200, p95 = 19th -> 400, p99 = 19.8th -> the 20th -> 900
    overall = level.overall
    assert (overall.requests, overall.errors) == (20, 1)
    assert overall.searches_per_s == pytest.approx(20 / 3)
    assert (overall.p50_ms, overall.p95_ms, overall.p99_ms) == (200, 400, 900)


def figures(rate: float, p95: float, errors: int) -> load.Figures:
    return load.Figures(2000, errors, rate, p50_ms=p95 / 2, p95_ms=p95, p99_ms=p95 * 1.2)


@pytest.mark.parametrize(
    ("rate", "p95", "errors", "met"),
    [
        (75.0, 400.0, 0, True),  # exactly on every bound
        (120.0, 150.0, 0, True),
        (74.9, 300.0, 0, False),  # too slow
        (90.0, 401.0, 0, False),  # p95 too high
        (90.0, 300.0, 1, False),  # one error
    ],
)
def test_the_target_is_met_only_within_every_bound(rate, p95, errors, met):
    assert load.target_met(figures(rate, p95, errors)) is met


def test_the_target_line_for_the_target_run():
    level = load.Level(20, figures(81.25, 350.0, 0))
    assert load.target_line(level, load.differences_from_target(run_args())) == (
        "target at 20 clients: >= 75 searches/s, p95 <= 400 ms, 0 errors: met "
        "(81.2 searches/s, p95 350 ms, 0 errors)"
    )


def test_the_target_line_says_how_a_smoke_run_differs_from_the_target_run():
    differences = load.differences_from_target(run_args(tiny=True, vectors=2000, requests=200))
    assert differences == ["tiny CLIP", "requests 200", "vectors 2,000"]
    line = load.target_line(load.Level(20, figures(40.0, 700.0, 3)), differences)
    assert line == (
        "target at 20 clients: >= 75 searches/s, p95 <= 400 ms, 0 errors: missed "
        "(40.0 searches/s, p95 700 ms, 3 errors); not the target row's run: tiny CLIP, "
        "requests 200, vectors 2,000"
    )


def test_client_counts_are_a_list_of_positive_counts():
    assert load.client_counts("1,5,10,20,40") == [1, 5, 10, 20, 40]
    assert load.client_counts("20") == [20]
    for bad in ("", "0", "5,-1", f"{load.MAX_CLIENTS + 1}", "five", "2.5"):
        with pytest.raises(ValueError, match="client counts must be whole numbers"):
            load.client_counts(bad)


def test_the_report_writes_the_figures_and_the_curves(tmp_path, capsys):
    levels = [
        load.Level(1, figures(20.0, 60.0, 0)),
        load.Level(20, figures(80.0, 390.0, 0)),
        load.Level(40, figures(85.0, 800.0, 2)),
    ]
    out = tmp_path / "artifacts" / "load-sqlite.json"
    assert load.report(run_args(), levels, out) == 1  # two errors at 40 clients
    printed = capsys.readouterr().out
    assert "target at 20 clients: >= 75 searches/s, p95 <= 400 ms, 0 errors: met" in printed
    assert printed.count("target at") == 1  # only the target's client count has a verdict
    assert "errors: 2" in printed
    saved = json.loads(out.read_text())
    assert [lv["clients"] for lv in saved["levels"]] == [1, 20, 40]
    assert saved["levels"][2]["overall"]["errors"] == 2
    assert saved["levels"][1]["overall"]["searches_per_s"] == 80.0
    assert saved["target"]["not_the_target_run"] == []
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_client_count_gets_figures_but_no_picture(tmp_path):
    out = tmp_path / "load-postgres.json"
    assert load.report(run_args(), [load.Level(20, figures(80.0, 300.0, 0))], out) == 0
    assert json.loads(out.read_text())["levels"][0]["clients"] == 20
    assert not out.with_suffix(".png").exists()


# --- the throwaway PostgreSQL cluster -------------------------------------------------------


def accepts_connections(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.postgres
def test_a_throwaway_cluster_serves_its_own_database_and_is_removed_afterwards():
    import psycopg

    with postgres_cluster() as cluster:
        with psycopg.connect(cluster.url) as db:
            assert db.execute("SELECT current_user, current_database()").fetchone() == (
                "tinyrag",
                "tinyrag",
            )
            assert db.execute("SHOW fsync").fetchone() == ("off",)
            db.execute("CREATE TABLE t (n int)")  # the role owns its database
            db.execute("INSERT INTO t VALUES (41), (1)")
            assert db.execute("SELECT sum(n) FROM t").fetchone() == (42,)
        folder, port = cluster.folder, cluster.port
        assert folder.is_dir()
    assert not folder.exists()
    assert not accepts_connections(port)


@pytest.mark.postgres
def test_a_cluster_is_stopped_and_removed_when_the_run_fails():
    seen = {}

    def broken_benchmark():
        with postgres_cluster() as cluster:
            seen.update(folder=cluster.folder, port=cluster.port)
            seen["serving"] = accepts_connections(cluster.port)
            raise RuntimeError("the benchmark broke")

    with pytest.raises(RuntimeError, match="the benchmark broke"):
        broken_benchmark()
    assert seen["serving"]
    assert not seen["folder"].exists()
    assert not accepts_connections(seen["port"])


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_gunicorn_workers_each_take_their_share_of_torch_threads(processes):
    """deploy/gunicorn.conf.py gives configure_cpu_threads its worker count: each worker's
    torch gets the usable CPUs divided among the workers (at least one), in a fresh process
    as a worker is (the first call decides, and OMP_NUM_THREADS would win)."""
    code = (
        "import torch; default = torch.get_num_threads(); "
        "from search.ml.device import configure_cpu_threads, usable_cpu_count; "
        f"got = configure_cpu_threads(processes={processes}); "
        "print(default, usable_cpu_count(), got, torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    default, usable, got, now = map(int, out.split())
    wanted = min(default, max(1, usable // processes))
    assert got == now == wanted
