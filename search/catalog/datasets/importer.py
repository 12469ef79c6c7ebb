"""Load a collection's classes and images into the database, idempotently.

Classes come with their names in English and Bahasa Indonesia (ImageClass.translations):
TinyImageNet's from TinyRAG's table, an image folder's from its optional class_names.tsv
(search/catalog/class_names.py); a re-import brings them up to date.

`import_dataset` is the use case (import_dataset command, bootstrap): check where the folder
lies, scan it in its format, then `import_scan` the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from search.catalog.counts import refresh_counts
from search.catalog.datasets import DatasetError
from search.catalog.datasets.imagefolder import scan_imagefolder
from search.catalog.datasets.layout import Scan, read_image_infos
from search.catalog.datasets.roots import root_problem
from search.catalog.datasets.tinyimagenet import scan as scan_tinyimagenet
from search.catalog.models import Dataset, Image, ImageClass

BATCH_SIZE = 2000  # rows per INSERT: well under SQLite's 32k-variable limit at 7 columns

SCANNERS = {
    Dataset.Source.TINYIMAGENET: scan_tinyimagenet,
    Dataset.Source.IMAGEFOLDER: scan_imagefolder,
}


@dataclass
class ImportReport:
    dataset: Dataset
    created_dataset: bool = False
    classes_added: int = 0
    classes_updated: int = 0
    images_added: int = 0
    images_unchanged: int = 0
    unreadable: list[str] = field(default_factory=list)
    missing_on_disk: int = 0  # rows whose file is gone: reported, removed only with prune
    pruned: int = 0
    stray: int = 0  # files of the folder that are not images of the layout (check_dataset)
    seconds: float = 0.0  # scan and import together


def import_dataset(
    *,
    root: Path,
    name: str,
    source: str,
    prune: bool = False,
    workers: int = 0,
    progress_factory=None,
) -> ImportReport:
    """Scan the folder `root` in its format (a Dataset.Source) and import what it holds.

    The root must lie where dataset roots may (roots.py): its images would be refused when
    served otherwise, so it is refused here, before anything is read.
    """
    root = root.expanduser().absolute()
    problem = root_problem(str(root))
    if problem is not None:
        raise DatasetError(f"{root}: {problem}")
    started = time.perf_counter()
    found = SCANNERS[Dataset.Source(source)](root)
    report = import_scan(
        found,
        name=name,
        source=source,
        prune=prune,
        workers=workers,
        progress_factory=progress_factory,
    )
    report.stray = len(found.stray)
    report.seconds = time.perf_counter() - started
    return report


def import_scan(
    found: Scan,
    *,
    name: str,
    source: str,
    prune: bool = False,
    workers: int = 0,
    progress_factory=None,
) -> ImportReport:
    root = found.root.resolve()
    dataset, created = Dataset.objects.get_or_create(
        name=name, defaults={"root": str(root), "source": source}
    )
    if dataset.source != source:
        raise DatasetError(
            f"dataset {name!r} was imported as {dataset.source}, not {source}; "
            "choose another --name"
        )
    if dataset.root != str(root):
        dataset.root = str(root)  # the folder moved: paths are relative, so rows stay valid
        dataset.save(update_fields=["root"])
    report = ImportReport(dataset=dataset, created_dataset=created)

    classes = {c.wnid: c for c in dataset.classes.all()}
    new_classes, changed = [], []
    for entry in found.classes:
        existing = classes.get(entry.wnid)
        if existing is None:
            new_classes.append(
                ImageClass(
                    dataset=dataset,
                    wnid=entry.wnid,
                    name=entry.name,
                    names=list(entry.names),
                    translations=entry.translations,
                )
            )
        elif (existing.name, existing.names, existing.translations) != (
            entry.name,
            list(entry.names),
            entry.translations,
        ):
            existing.name, existing.names = entry.name, list(entry.names)
            existing.translations = entry.translations  # the table or class_names.tsv rules
            changed.append(existing)
    with transaction.atomic():
        ImageClass.objects.bulk_create(new_classes, batch_size=BATCH_SIZE)
        ImageClass.objects.bulk_update(
            changed, ["name", "names", "translations"], batch_size=BATCH_SIZE
        )
    report.classes_added, report.classes_updated = len(new_classes), len(changed)
    class_ids = dict(dataset.classes.values_list("wnid", "id"))

    existing_paths = set(dataset.images.values_list("path", flat=True))
    on_disk = {e.path for e in found.images}
    todo = [e for e in found.images if e.path not in existing_paths]
    report.images_unchanged = len(found.images) - len(todo)
    unknown = sorted({e.wnid for e in todo if e.wnid is not None and e.wnid not in class_ids})
    if unknown:
        raise DatasetError(f"images of classes missing from the class list: {', '.join(unknown)}")

    bar = (
        progress_factory(total=len(todo), desc="import images", unit="img")
        if progress_factory
        else None
    )
    batch: list[Image] = []
    try:
        infos = read_image_infos(
            root, [e.path for e in todo], decode=False, workers=workers, progress=bar
        )
        for entry, info in zip(todo, infos, strict=True):
            if info.error:
                report.unreadable.append(f"{entry.path}: {info.error}")
                continue
            batch.append(
                Image(
                    dataset=dataset,
                    split=entry.split,
                    path=entry.path,
                    image_class_id=class_ids.get(entry.wnid) if entry.wnid else None,
                    width=info.width,
                    height=info.height,
                    mode=info.mode,
                )
            )
            if len(batch) >= BATCH_SIZE:
                report.images_added += _insert(batch)
        report.images_added += _insert(batch)
    finally:
        if bar is not None:
            bar.close()

    gone = existing_paths - on_disk
    report.missing_on_disk = len(gone)
    if prune and gone:
        gone_paths = sorted(gone)
        for i in range(0, len(gone_paths), BATCH_SIZE):
            deleted, _ = dataset.images.filter(path__in=gone_paths[i : i + BATCH_SIZE]).delete()
            report.pruned += deleted
    refresh_counts([dataset.pk])  # the collections page reads these (search/catalog/counts.py)
    return report


def _insert(batch: list[Image]) -> int:
    """Insert and empty `batch`; rows a concurrent import already added are skipped."""
    n = len(batch)
    with transaction.atomic():
        Image.objects.bulk_create(batch, batch_size=BATCH_SIZE, ignore_conflicts=True)
    batch.clear()
    return n
