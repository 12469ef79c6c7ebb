"""What an upload costs the web worker: peak memory and time of reading it and preparing it
for CLIP (search.queries.uploads.read_upload, then CLIP's own 224-pixel preprocessing).

Each case runs in a fresh process, so its peak RSS (resource.getrusage) is its own; the
baseline is the process after imports, before the upload. `--tree` points at another
checkout of TinyRAG (say, an older commit in a git worktree) to measure its code the same way.

    .venv/bin/python benchmarks/upload_cost.py [--tree /tmp/old-tinyrag]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASE = """
import io, json, os, re, resource, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()
from transformers import CLIPImageProcessor
try:
    from search.queries.uploads import UploadError, read_upload
except ImportError:  # a tree from before the domain packages
    from search.services.uploads import UploadError, read_upload

processor = CLIPImageProcessor()  # clip-ViT-B-32's: shortest side 224, centre crop 224
data = sys.stdin.buffer.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    image, _ = read_upload(data)
    processor(images=[image], return_tensors="pt")
    outcome = f"accepted {image.width}x{image.height}"
except UploadError as exc:
    outcome = f"refused: {exc}"
except (MemoryError, RuntimeError) as exc:  # torch: "you tried to allocate N bytes"
    asked = re.search(r"allocate (\\d+) bytes", str(exc))
    outcome = f"failed to allocate {int(asked[1]) / 1e9:.1f} GB" if asked else repr(exc)[:70]
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": seconds, "extra_mb": (peak - before) / 1024}))
"""


def cases() -> dict[str, bytes]:
    from PIL import Image

    def encoded(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    return {
        "200000x1 PNG": encoded(Image.new("L", (200_000, 1), 128), "PNG", optimize=True),
        "400000x1 PNG": encoded(Image.new("L", (400_000, 1), 128), "PNG", optimize=True),
        "8000x5000 RGBA PNG": encoded(Image.new("RGBA", (8000, 5000), (9, 9, 9, 9)), "PNG"),
        "6000x4000 JPEG": encoded(Image.new("RGB", (6000, 4000), (200, 30, 30)), "JPEG"),
        "640x480 JPEG": encoded(Image.new("RGB", (640, 480), (200, 30, 30)), "JPEG"),
    }


def measure(tree: Path, data: bytes) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", CASE], input=data, cwd=tree, env=env, capture_output=True
    )
    if proc.returncode != 0:
        return {"outcome": f"crashed ({proc.returncode})", "seconds": 0.0, "extra_mb": 0.0}
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the TinyRAG checkout to run")
    args = parser.parse_args()
    print(f"{'upload':<20} {'bytes':>9} {'extra MB':>9} {'seconds':>8}  outcome")
    for name, data in cases().items():
        result = measure(args.tree.resolve(), data)
        print(
            f"{name:<20} {len(data):>9,} {result['extra_mb']:>9.0f} {result['seconds']:>8.2f}"
            f"  {result['outcome'][:70]}"
        )


if __name__ == "__main__":
    main()
