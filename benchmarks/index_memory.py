"""Resident memory per gunicorn worker once each has loaded the published index.

    flock /tmp/cpu.lock .venv/bin/python benchmarks/index_memory.py [--sizes 100000,1000000]
                                                                    [--workers 2,4]

For each size, a flat index over embedding-like unit vectors (dim 512) is published in a temporary
folder (benchmarks/_server.py's publish_world), the site runs under gunicorn
(deploy/gunicorn.conf.py, warm-up on: every worker loads the index and CLIP before it serves),
and /proc/<pid>/smaps_rollup of each worker gives Rss, Pss, Private and Shared. The index is
read memory-mapped (search/index/service.py, mapped_read_flags), so its pages are Shared and
each worker's Pss carries 1/workers of them. CLIP is a tiny random-weight model with CLIP's
512-dim projection: the figures are the worker's own (Django, torch, faiss) plus the index,
not a full ViT-B/32 (add ~0.6 GB per worker for that, copied per process).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
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
)

DIM = 512  # CLIP ViT-B/32's embedding size


def rollup(pid: int) -> dict[str, int]:
    """MiB by field of /proc/<pid>/smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1]) // 1024
    return {
        "Rss": fields["Rss"],
        "Pss": fields["Pss"],
        "Private": fields["Private_Clean"] + fields["Private_Dirty"],
        "Shared": fields["Shared_Clean"] + fields["Shared_Dirty"],
    }


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def gunicorn_master() -> int:
    """The gunicorn master: this process's child (tests/fixtures/site.py starts it)."""
    out = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "gunicorn"], capture_output=True, text=True
    )
    return int(out.stdout.split()[0])


def measure(env: dict[str, str], workers: int) -> list[dict[str, int]]:
    with gunicorn(env, workers=workers):
        pids = worker_pids(gunicorn_master())
        return [rollup(pid) for pid in pids]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="Vectors (100000,1000000).")
    parser.add_argument("--workers", default="2,4", help="gunicorn worker counts (2,4).")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(w) for w in args.workers.split(",")]
    from tests.fixtures.models import TINY_CLIP, build_clip

    print("size       workers  index on disk   per worker MiB: Rss    Pss  Private  Shared")
    for n in sizes:
        workdir = Path(tempfile.mkdtemp(prefix="tinyrag-index-memory-"))
        try:
            clip_dir = build_clip(
                workdir / "clip", dataclasses.replace(TINY_CLIP, projection_dim=DIM)
            )
            env = bench_environment(workdir, clip_dir)
            setup_django(env)
            publish_world(
                embedding_like(n, DIM), workdir, model_id=str(clip_dir), index_type="flat"
            )
            from django.db import connections

            connections.close_all()
            folder = (workdir / "vector_db" / "bench").resolve()
            on_disk = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            for workers in counts:
                rows = measure(env, workers)
                mean = {k: sum(r[k] for r in rows) // len(rows) for k in rows[0]}
                print(
                    f"{n:>9,}  {workers:>7}  {on_disk:>10,.0f} MiB  "
                    f"{mean['Rss']:>19} {mean['Pss']:>6} {mean['Private']:>8} {mean['Shared']:>7}"
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
