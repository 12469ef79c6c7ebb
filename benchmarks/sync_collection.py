"""Adding images to a large collection: one sync (rescan + incremental build) against a full
rebuild, in one run on this machine.

    flock /tmp/cpu.lock .venv/bin/python benchmarks/sync_collection.py [--images 100000]
                                                                       [--added 100]

An image folder of N synthetic 64x64 JPEGs (200 classes) is written and imported
(import_dataset, which hashes every file). Its index is published as a full build would have
left it: one vector per image (embedding-like, benchmarks/_server.py) with each file's content
hash, the model id and the preprocessing of the full-size CLIP ViT-B/32 built here (random
weights cost what real ones cost). Then `--added` images are written into its class folders
and the collection is synced (search.index.sync.sync_now, what `manage.py sync_collection`
runs): the rescan stats every file and hashes the new ones, the build reuses every unchanged
vector, embeds the new images and publishes an exact index of N + added vectors.

The full rebuild is not run (it takes tens of minutes): its embedding time is N + added images
at the rate build_index measures here on a 1,000-image build of the same collection with the
default settings. That build is too small to compile the image tower; a full one compiles and
embeds up to ~1.3x faster (build_index --compile), which does not change the order of magnitude.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._server import bench_environment, embedding_like, setup_django  # noqa: E402
from benchmarks.embed_throughput import write_images  # noqa: E402

CLASSES = 200


def write_collection(root: Path, images: int) -> None:
    per_class = -(-images // CLASSES)
    written = 0
    for c in range(CLASSES):
        count = min(per_class, images - written)
        if count <= 0:
            break
        write_images(root / "train" / f"c{c:03d}", count, seed=c)
        written += count


def add_images(root: Path, scratch: Path, count: int) -> None:
    for k, path in enumerate(write_images(scratch / "added", count, seed=10_000)):
        path.rename(root / "train" / f"c{k % CLASSES:03d}" / f"added-{k:04d}.jpg")


def publish_as_built(embedder, dataset_name: str, index_dir: Path) -> int:
    """The index a full build of the imported collection would have published (random
    embedding-like vectors in place of the hours of CPU it takes)."""
    from search.catalog.models import Image
    from search.index import service as fi
    from search.index.build import embedding_recipe

    rows = Image.objects.filter(dataset__name=dataset_name, split="train").order_by("id")
    ids, hashes = zip(*rows.values_list("id", "content_hash"), strict=True)
    ids = np.array(ids, dtype=np.int64)
    vectors = embedding_like(len(ids), embedder.dim)
    index, params = fi.build_faiss_index(vectors, ids, fi.IndexType.FLAT)
    manifest = fi.IndexManifest(
        name="bench",
        model_id=embedder.model_id,
        dim=embedder.dim,
        **fi.manifest_fields(params),
        count=len(ids),
        dataset=dataset_name,
        splits=["train"],
        created_at=fi.now_iso(),
        preprocessing=embedding_recipe(embedder),
        embedded=len(ids),
    )
    staged = fi.builds_dir(index_dir) / "bench-seed"
    fi.write_index_folder(staged, index, vectors, ids, manifest, hashes=np.array(hashes, "S64"))
    fi.publish(staged, index_dir, "bench")
    return len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000, help="Collection size.")
    parser.add_argument("--added", type=int, default=100, help="Images added before the sync.")
    parser.add_argument("--model-dir", type=Path, help="A CLIP built by an earlier run.")
    args = parser.parse_args()

    from tests.fixtures.models import VIT_B_32, build_clip

    with tempfile.TemporaryDirectory(prefix="tinyrag-sync-") as scratch:
        work = Path(scratch)
        model_dir = args.model_dir or build_clip(work / "clip-ViT-B-32", VIT_B_32)
        setup_django(bench_environment(work, model_dir))
        from django.conf import settings

        from search.catalog.datasets.importer import import_dataset
        from search.index.build import BuildOptions, build_index
        from search.index.sync import sync_now
        from search.ml.registry import get_clip_embedder

        root = Path(settings.TINYRAG_DATA_DIR) / "photos"
        started = time.perf_counter()
        write_collection(root, args.images)
        print(f"wrote {args.images:,} JPEGs in {time.perf_counter() - started:.0f} s")
        report = import_dataset(root=root, name="photos", source="imagefolder", workers=2)
        print(f"first import (hashes every file): {report.seconds:.1f} s")
        embedder = get_clip_embedder()
        embedder.load()
        seeded = publish_as_built(embedder, "photos", Path(settings.TINYRAG_INDEX_DIR))
        print(f"published index 'bench' as a full build leaves it: {seeded:,} vectors")

        add_images(root, work, args.added)
        started = time.perf_counter()
        sync = sync_now("photos", index_name="bench")
        sync_seconds = time.perf_counter() - started
        assert sync.status == "done", sync.error
        print(
            f"sync after adding {args.added}: {sync_seconds:.1f} s "
            f"({sync.images_added} added, {sync.images_unchanged:,} unchanged; "
            f"{sync.vectors_reused:,} vectors reused, {sync.vectors_embedded} embedded, "
            f"{sync.vectors_total:,} published)"
        )

        sample = build_index(
            BuildOptions(name="rate", dataset="photos", limit_per_class=5, restart=True)
        )
        total = args.images + args.added
        rebuild = total / sample.images_per_second
        print(
            f"full rebuild, embedding alone: {total:,} images at {sample.images_per_second} "
            f"img/s (build_index on {sample.count:,} of them, default settings) = "
            f"{rebuild / 60:.1f} min"
        )
        print(
            f"sync / full rebuild: {sync_seconds:.1f} s vs {rebuild:.0f} s "
            f"({rebuild / sync_seconds:.0f}x)"
        )
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
