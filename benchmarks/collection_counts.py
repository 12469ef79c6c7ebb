"""What the Collections page's statistics cost at TinyImageNet scale, before and after they
were stored (search/catalog/counts.py).

    .venv/bin/python benchmarks/collection_counts.py [--train-per-class 500]

Fills a temporary SQLite database (WAL, as the development server runs it) with 200 classes,
`--train-per-class` train images and 50 val images per class and 10,000 unlabelled test
images (120,000 rows by default), then prints the best of a few runs of:

  - the old aggregate of the page (COUNT DISTINCT per split over the dataset-image join) and
    the old per-class COUNT, which the page ran on every visit;
  - what the page reads now (stored counts, with the cheap staleness check), and what an
    import adds to refresh them.

Target: the page's reads in milliseconds (they were 7.5 s and more on 120k rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import bench_environment, setup_django  # noqa: E402


def best_of(label: str, fn, repeat: int = 5) -> None:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    print(f"{label:58s} {best * 1000:10.1f} ms  (best of {repeat})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=500)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tinyrag-bench-counts-"))
    setup_django(bench_environment(workdir, workdir / "no-clip"))

    from django.db import connection
    from django.db.models import Count, Q

    from search.catalog import selectors
    from search.catalog.counts import refresh_counts, stale_datasets
    from search.catalog.models import Dataset, Image, ImageClass

    dataset = Dataset.objects.create(
        name="tiny-imagenet-200", root=str(workdir), source="tinyimagenet"
    )
    classes = ImageClass.objects.bulk_create(
        ImageClass(dataset=dataset, wnid=f"n{i:08d}", name=f"class {i}") for i in range(200)
    )
    rows = [
        Image(dataset=dataset, split=split, image_class=c, path=f"{split}/{c.wnid}/{j}.JPEG",
              width=64, height=64, mode="RGB")
        for c in classes
        for split, count in (("train", args.train_per_class), ("val", 50))
        for j in range(count)
    ] + [
        Image(dataset=dataset, split="test", path=f"test/{j}.JPEG", width=64, height=64, mode="RGB")
        for j in range(10_000)
    ]  # fmt: skip
    Image.objects.bulk_create(rows, batch_size=2000)
    refresh_counts()
    journal = connection.cursor().execute("PRAGMA journal_mode").fetchone()[0]
    print(f"{Image.objects.count():,} images in 200 classes; SQLite journal_mode={journal}")

    def old_overview():
        return list(
            Dataset.objects.annotate(
                n_classes=Count("classes", distinct=True),
                n_train=Count("images", filter=Q(images__split="train"), distinct=True),
                n_val=Count("images", filter=Q(images__split="val"), distinct=True),
                n_test=Count("images", filter=Q(images__split="test"), distinct=True),
            )
        )

    def old_classes():
        return list(ImageClass.objects.annotate(n_images=Count("images")).order_by("wnid"))

    best_of("before: dataset overview (COUNT DISTINCT per split)", old_overview, repeat=2)
    best_of("before: classes with their image counts", old_classes)
    best_of(
        "now: dataset_overview() (stored counts + staleness check)",
        lambda: list(selectors.dataset_overview()),
    )
    best_of("now: class_overview(dataset)", lambda: list(selectors.class_overview(dataset)))
    best_of("now: the staleness check alone", stale_datasets)
    best_of("what an import adds: refresh_counts()", refresh_counts)
    (old,) = old_overview()
    (new,) = selectors.dataset_overview()
    same = (old.n_classes, old.n_train, old.n_val, old.n_test) == (
        new.class_count, new.train_count, new.val_count, new.test_count)  # fmt: skip
    print(f"stored counts equal the aggregate: {same}")


if __name__ == "__main__":
    main()
