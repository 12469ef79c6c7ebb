"""A generic image folder: `<root>/<class>/<image>`, or `<root>/<split>/<class>/<image>`.

A class is named after its folder ("tabby_cat" -> "tabby cat"), unless the folder holds a
`class_names.tsv` at its root giving names in English and Bahasa Indonesia (the format is in
search/catalog/class_names.py).
"""

from __future__ import annotations

from pathlib import Path

from search.catalog.class_names import (
    CLASS_NAMES_FILE,
    english_names,
    read_class_names_file,
    translations_of,
)
from search.catalog.datasets import DatasetError
from search.catalog.datasets.layout import (
    JUNK_NAMES,
    SPLITS,
    ClassEntry,
    ImageEntry,
    Scan,
    is_image_name,
)
from search.catalog.datasets.tinyimagenet import CheckReport, decode_images, named


def scan_imagefolder(root: Path) -> Scan:
    """The images and classes under `root`; DatasetError for a folder without images, or a
    class_names.tsv with bad lines (every one named)."""
    scan = _scan_tree(root)
    _name_classes(scan)
    return scan


def _scan_tree(root: Path) -> Scan:
    """The images under `root` and what does not belong, each class named after its folder."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    scan = Scan(root=root)
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    tops = split_dirs or [root]
    names_file = root / CLASS_NAMES_FILE
    wnids: set[str] = set()
    for top in tops:
        split = top.name if split_dirs else "train"
        for entry in sorted(top.iterdir()):
            if entry.name in JUNK_NAMES or entry == names_file:
                continue
            if not entry.is_dir():
                scan.stray.append(entry.relative_to(root).as_posix())
                continue
            wnids.add(entry.name)
            for file in sorted(entry.iterdir()):
                rel = file.relative_to(root).as_posix()
                if file.is_file() and is_image_name(file.name):
                    scan.images.append(ImageEntry(split, entry.name, rel))
                elif file.name not in JUNK_NAMES:
                    scan.stray.append(rel)
    if split_dirs:
        scan.stray.extend(
            e.name
            for e in sorted(root.iterdir())
            if e not in split_dirs and e.name not in JUNK_NAMES and e != names_file
        )
    scan.classes = [ClassEntry(w, (w.replace("_", " "),)) for w in sorted(wnids)]
    if not scan.images:
        raise DatasetError(f"no images found under {root} (expected <class>/<image> folders)")
    return scan


def _name_classes(scan: Scan) -> None:
    """The names the folder's class_names.tsv gives its classes, if it has one."""
    names_file = scan.root / CLASS_NAMES_FILE
    if not names_file.is_file():
        return
    given = read_class_names_file(names_file, {c.wnid for c in scan.classes})
    scan.classes = [
        ClassEntry(
            c.wnid,
            english_names(given.get(c.wnid, {})) or c.names,
            translations_of(given.get(c.wnid, {})),
        )
        for c in scan.classes
    ]


def check_imagefolder(root: Path, *, workers: int = 0, progress_factory=None) -> CheckReport:
    """What check_dataset reports for an image folder (a tinyimagenet.CheckReport): its
    classes and images per split and class, unreadable images, stray files, and the bad lines
    of its class_names.tsv, each a problem."""
    found = _scan_tree(root)
    report = CheckReport(root=str(root), classes=len(found.classes), stray=found.stray)
    try:
        _name_classes(found)
    except DatasetError as exc:
        report.problems.append(str(exc))
    for entry in found.images:
        report.images[entry.split] = report.images.get(entry.split, 0) + 1
        by_class = report.per_class.setdefault(entry.split, {})
        by_class[entry.wnid] = by_class.get(entry.wnid, 0) + 1
    decode_images(
        report,
        root,
        [e.path for e in found.images],
        workers=workers,
        progress_factory=progress_factory,
    )
    if report.unreadable:
        report.problems.append(
            f"{len(report.unreadable)} unreadable or truncated images: {named(report.unreadable)}"
        )
    if report.stray:
        report.problems.append(f"{len(report.stray)} stray files or folders: {named(report.stray)}")
    return report
