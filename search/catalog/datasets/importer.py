"""Load a collection's classes and images into the database, idempotently.

Classes come with their names in English and Bahasa Indonesia (ImageClass.translations):
TinyImageNet's from TinyRAG's table, an image folder's from its optional class_names.tsv
(search/catalog/class_names.py); a re-import brings them up to date.

`import_dataset` is the use case (import_dataset command, bootstrap): check where the folder
lies, scan it in its format, then `import_scan` the result.

A rerun is an incremental rescan. New files are read once each, in worker processes, for
their header and their sha256. A file already imported costs one stat while its size and
mtime are those recorded; otherwise (or when its row has no hash yet) it is read and decoded
again: the same bytes only refresh the recorded stat, other bytes update the row (a changed
image), and a file that no longer decodes leaves its row as it was and is reported. Rows whose
files are gone are reported, and deleted only with `prune`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from search.catalog.counts import refresh_counts
from search.catalog.datasets import DatasetError
from search.catalog.datasets.imagefolder import scan_imagefolder
from search.catalog.datasets.layout import ImageEntry, ImageInfo, Scan, read_image_infos
from search.catalog.datasets.roots import root_problem
from search.catalog.datasets.tinyimagenet import scan as scan_tinyimagenet
from search.catalog.models import Dataset, Image, ImageClass

BATCH_SIZE = 2000  # rows per INSERT: well under SQLite's 32k-variable limit at 10 columns
# Rows per bulk UPDATE: each is a CASE over the batch's ids per column, so its cost grows
# with the square of the batch; 500 keeps one statement in milliseconds.
UPDATE_BATCH_SIZE = 500
CHANGED_FIELDS = ["width", "height", "mode", "size", "mtime_ns", "content_hash"]
TOUCHED_FIELDS = ["size", "mtime_ns", "content_hash"]  # same bytes: only the stat moved

SCANNERS = {
    Dataset.Source.TINYIMAGENET: scan_tinyimagenet,
    Dataset.Source.IMAGEFOLDER: scan_imagefolder,
}


@dataclass
class ImportReport:
    """What an import did; the counts are plain ints (the collections page shows them)."""

    dataset: Dataset
    created_dataset: bool = False
    classes_added: int = 0
    classes_updated: int = 0
    images_added: int = 0  # rows inserted, the renamed ones included
    # Of the added, files whose bytes a row of a vanished file has: moved or renamed. They
    # are new rows all the same (their path says their split and class); the old rows are
    # among missing_on_disk.
    images_renamed: int = 0
    images_changed: int = 0  # rows whose file holds other bytes now: re-read and updated
    # Rows whose file holds the bytes it had (one whose mtime alone moved included).
    images_unchanged: int = 0
    unreadable: list[str] = field(default_factory=list)  # "path: reason"; rows kept as they were
    missing_on_disk: int = 0  # rows whose file is gone: reported, removed only with prune
    pruned: int = 0  # Image rows deleted
    # Users' search results and descriptions of the pruned images, deleted with them (their
    # foreign keys cascade); queries that started from one keep their row, without it.
    history_pruned: int = 0
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

    recorded = {
        path: _Recorded(pk, size, mtime_ns, content_hash, (width, height, mode))
        for path, pk, size, mtime_ns, content_hash, width, height, mode in (
            dataset.images.values_list(
                "path", "id", "size", "mtime_ns", "content_hash", "width", "height", "mode"
            ).iterator(chunk_size=BATCH_SIZE)
        )
    }
    todo = [e for e in found.images if e.path not in recorded]
    unknown = sorted({e.wnid for e in todo if e.wnid is not None and e.wnid not in class_ids})
    if unknown:
        raise DatasetError(f"images of classes missing from the class list: {', '.join(unknown)}")
    on_disk = {e.path for e in found.images}
    gone = [path for path in recorded if path not in on_disk]
    vanished_hashes = Counter(recorded[p].content_hash for p in gone if recorded[p].content_hash)

    _rescan(root, found.images, recorded, report, workers, progress_factory)
    _add(root, todo, dataset, class_ids, vanished_hashes, report, workers, progress_factory)

    report.missing_on_disk = len(gone)
    if prune and gone:
        gone.sort()
        for i in range(0, len(gone), BATCH_SIZE):
            _, deleted = dataset.images.filter(path__in=gone[i : i + BATCH_SIZE]).delete()
            images = deleted.pop(Image._meta.label, 0)
            report.pruned += images
            report.history_pruned += sum(deleted.values())
    refresh_counts([dataset.pk])  # the collections page reads these (search/catalog/counts.py)
    return report


@dataclass(frozen=True, slots=True)  # one per row: 100k of them for TinyImageNet
class _Recorded:
    """What an Image row says of its file."""

    pk: int
    size: int
    mtime_ns: int
    content_hash: str
    header: tuple[int, int, str]  # width, height, mode


def _rescan(
    root: Path,
    entries: list[ImageEntry],
    recorded: dict[str, _Recorded],
    report: ImportReport,
    workers: int,
    progress_factory,
) -> None:
    """Bring the rows of files already imported up to date; one stat each when nothing moved.

    A file whose stat differs from its row's (or whose row has no hash yet) is read and
    decoded in full before its row changes: a truncated file must not replace a good row."""
    suspects: list[str] = []
    for entry in entries:
        row = recorded.get(entry.path)
        if row is None:
            continue
        try:
            stat = os.stat(root / entry.path)
        except OSError as exc:  # gone or unreachable since the scan: keep the row
            report.unreadable.append(f"{entry.path}: {exc.strerror or exc}")
            continue
        if row.content_hash and (stat.st_size, stat.st_mtime_ns) == (row.size, row.mtime_ns):
            report.images_unchanged += 1
        else:
            suspects.append(entry.path)
    if not suspects:
        return

    bar = (
        progress_factory(total=len(suspects), desc="rescan images", unit="img")
        if progress_factory
        else None
    )
    changed: list[Image] = []
    touched: list[Image] = []
    try:
        infos = read_image_infos(
            root, suspects, decode=True, digest=True, workers=workers, progress=bar
        )
        for info in infos:
            if info.error:
                report.unreadable.append(f"{info.path}: {info.error}")
                continue
            row = recorded[info.path]
            # A row without a hash (imported before hashes) has only its header to go by.
            same = (
                info.content_hash == row.content_hash
                if row.content_hash
                else (info.width, info.height, info.mode) == row.header
            )
            if same:
                report.images_unchanged += 1
                touched.append(_updated_row(row.pk, info))
            else:
                report.images_changed += 1
                changed.append(_updated_row(row.pk, info))
            if len(touched) >= UPDATE_BATCH_SIZE:
                _update(touched, TOUCHED_FIELDS)
            if len(changed) >= UPDATE_BATCH_SIZE:
                _update(changed, CHANGED_FIELDS)
        _update(touched, TOUCHED_FIELDS)
        _update(changed, CHANGED_FIELDS)
    finally:
        if bar is not None:
            bar.close()


def _file_fields(info: ImageInfo) -> dict:
    """What an Image row records of its file (CHANGED_FIELDS), as read now."""
    return {
        "width": info.width,
        "height": info.height,
        "mode": info.mode,
        "size": info.size,
        "mtime_ns": info.mtime_ns,
        "content_hash": info.content_hash,
    }


def _updated_row(pk: int, info: ImageInfo) -> Image:
    """An Image carrying what bulk_update writes: the pk and what the file says now."""
    return Image(pk=pk, **_file_fields(info))


def _update(batch: list[Image], fields: list[str]) -> None:
    """Write and empty `batch`, in one transaction."""
    if batch:
        with transaction.atomic():
            Image.objects.bulk_update(batch, fields, batch_size=UPDATE_BATCH_SIZE)
        batch.clear()


def _add(
    root: Path,
    todo: list[ImageEntry],
    dataset: Dataset,
    class_ids: dict[str, int],
    vanished_hashes: Counter,
    report: ImportReport,
    workers: int,
    progress_factory,
) -> None:
    """Insert rows for the new files (header and hash read in one pass); a file with the
    bytes of a vanished row's is counted renamed too, each vanished row matched once."""
    bar = (
        progress_factory(total=len(todo), desc="import images", unit="img")
        if progress_factory
        else None
    )
    batch: list[Image] = []
    try:
        infos = read_image_infos(
            root, [e.path for e in todo], decode=False, digest=True, workers=workers, progress=bar
        )
        for entry, info in zip(todo, infos, strict=True):
            if info.error:
                report.unreadable.append(f"{entry.path}: {info.error}")
                continue
            if vanished_hashes[info.content_hash] > 0:
                vanished_hashes[info.content_hash] -= 1
                report.images_renamed += 1
            batch.append(
                Image(
                    dataset=dataset,
                    split=entry.split,
                    path=entry.path,
                    image_class_id=class_ids.get(entry.wnid) if entry.wnid else None,
                    **_file_fields(info),
                )
            )
            if len(batch) >= BATCH_SIZE:
                report.images_added += _insert(batch)
        report.images_added += _insert(batch)
    finally:
        if bar is not None:
            bar.close()


def _insert(batch: list[Image]) -> int:
    """Insert and empty `batch`; rows a concurrent import already added are skipped."""
    n = len(batch)
    with transaction.atomic():
        Image.objects.bulk_create(batch, batch_size=BATCH_SIZE, ignore_conflicts=True)
    batch.clear()
    return n
