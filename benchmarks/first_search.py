"""The first search after a start, with and without the warm-up that gunicorn's workers and
the development server now run (search.ops.health.warm_up / warm_up_in_background).

    .venv/bin/python benchmarks/first_search.py [--vectors 10000]

Saves the full-size CLIP ViT-B/32 architecture with random weights (it costs what the real
weights cost) and a flat index of `--vectors` embedding-like vectors in a temporary folder,
then, each in a fresh Python process (nothing loaded yet, as after `dev.sh` starts):

  cold: the first text_search() as a request would run it, loading CLIP on the way;
  warm: warm_up() first (what the server does as it starts), then the first text_search().

Target: the warm first search as fast as any later one (tens of milliseconds on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._server import bench_environment  # noqa: E402

CHILD = """
import json, sys, time
from benchmarks._server import setup_django
setup_django({})
from django.contrib.auth import get_user_model
from search.queries.services import text_search
user = get_user_model().objects.get_or_create(username="bench")[0]
warm_up_s = 0.0
if sys.argv[1] == "warm":
    from search.ops.health import warm_up
    started = time.perf_counter(); warm_up(); warm_up_s = time.perf_counter() - started
started = time.perf_counter(); text_search(user=user, text="a school bus")
first = time.perf_counter() - started
started = time.perf_counter(); text_search(user=user, text="a lemon")
second = time.perf_counter() - started
print(json.dumps({{"warm_up_s": warm_up_s, "first_s": first, "second_s": second}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tinyrag-bench-first-") as tmp:
        workdir = Path(tmp)
        from tests.fixtures.models import VIT_B_32, build_clip

        build_clip(workdir / "clip", VIT_B_32)
        env = bench_environment(workdir, workdir / "clip")
        prepare = subprocess.run(
            [sys.executable, "-c", _publish(args.vectors, env, workdir)],
            cwd=ROOT, env={**os.environ, **env}, check=True,
        )  # fmt: skip
        assert prepare.returncode == 0
        for mode in ("cold", "warm"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(env), mode],
                cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True, text=True,
            )  # fmt: skip
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{mode}: warm-up {figures['warm_up_s']:.2f} s, first search "
                f"{figures['first_s'] * 1000:.0f} ms, second {figures['second_s'] * 1000:.0f} ms"
            )
    print(f"machine: {os.cpu_count()} CPUs, CLIP ViT-B/32 (random weights), {args.vectors} vectors")


def _publish(vectors: int, env: dict, workdir: Path) -> str:
    return (
        "from pathlib import Path\n"
        "from benchmarks._server import setup_django, publish_world, embedding_like\n"
        f"setup_django({env!r})\n"
        f"publish_world(embedding_like({vectors}, 512), Path({str(workdir)!r}),"
        f" model_id={str(workdir / 'clip')!r})\n"
    )


if __name__ == "__main__":
    main()
