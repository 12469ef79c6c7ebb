"""TinyImageNet-200: extract, lay out as class folders, scan and check.

The archive's own layout::

    tiny-imagenet-200/wnids.txt  words.txt
    tiny-imagenet-200/train/<wnid>/images/<wnid>_<k>.JPEG  train/<wnid>/<wnid>_boxes.txt
    tiny-imagenet-200/val/images/val_<k>.JPEG  val/val_annotations.txt
    tiny-imagenet-200/test/images/test_<k>.JPEG

The prepared layout moves train images up to `train/<wnid>/` and val images into
`val/<wnid>/` (by val_annotations.txt); test stays in `test/images/` (it has no labels).
Real files differ from the documentation: `.JPEG` in capitals, grayscale JPEGs, a words.txt
of all 82,115 ImageNet synsets without a final newline, CRLF line ends, `.DS_Store` files.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from search.catalog.class_names import tinyimagenet_translations
from search.catalog.datasets import DatasetError
from search.catalog.datasets.layout import (
    JUNK_NAMES,
    ClassEntry,
    ImageEntry,
    Scan,
    is_image_name,
    read_image_infos,
)

ARCHIVE_NAME = "tiny-imagenet-200.zip"
DIR_NAME = "tiny-imagenet-200"
EXPECTED_CLASSES = 200
EXPECTED_TRAIN_PER_CLASS = 500
EXPECTED_VAL_PER_CLASS = 50
EXPECTED_TEST = 10_000
EXPECTED_SIZE = (64, 64)
TOP_LEVEL = frozenset({"wnids.txt", "words.txt", "train", "val", "test"})
LISTED = 10  # how many examples a report names before "and N more"


# --- metadata files -----------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    """Non-empty lines, whatever the line ends, with or without a final newline."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_wnids(root: Path) -> list[str]:
    path = root / "wnids.txt"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: is {root} a TinyImageNet folder?")
    return _lines(path)


def read_words(root: Path, wnids: list[str] | set[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Synonyms per wnid from words.txt (`wnid<TAB>name, other name, ...`), in file order."""
    path = root / "words.txt"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: is {root} a TinyImageNet folder?")
    wanted = set(wnids) if wnids is not None else None
    words: dict[str, tuple[str, ...]] = {}
    for line in _lines(path):
        wnid, _, text = line.partition("\t")
        if wanted is None or wnid in wanted:
            words[wnid] = tuple(n.strip() for n in text.split(",") if n.strip())
    return words


def read_val_annotations(root: Path) -> dict[str, str]:
    """File name -> wnid from `val/val_annotations.txt` (name, wnid, x0, y0, x1, y1)."""
    path = root / "val" / "val_annotations.txt"
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    annotations: dict[str, str] = {}
    for line in _lines(path):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetError(f"{path}: malformed line {line!r}")
        annotations[fields[0]] = fields[1]
    return annotations


def read_classes(root: Path) -> list[ClassEntry]:
    """The classes of wnids.txt with their English names (words.txt) and their Indonesian
    ones (TinyRAG's table, search/catalog/data/tinyimagenet-200-id.tsv)."""
    wnids = read_wnids(root)
    words = read_words(root, wnids)
    return [ClassEntry(w, words.get(w, ()), tinyimagenet_translations(w)) for w in wnids]


# --- extraction ---------------------------------------------------------------------------


def _member_target(name: str, strip: str) -> PurePosixPath | None:
    """The safe relative path of a zip member, None for junk; raises for unsafe names."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(f"archive entry {name!r} is an absolute path; refusing to extract")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise DatasetError(f"archive entry {name!r} escapes the destination; refusing to extract")
    if not parts or parts[0] == "__MACOSX" or parts[-1] in JUNK_NAMES:
        return None
    if strip and parts[0] == strip:
        parts = parts[1:]
    return PurePosixPath(*parts) if parts else None


def extract_archive(archive: Path, dest: Path, progress=None) -> int:
    """Extract `archive` into `dest`, dropping its single top folder; returns files written.

    Every entry is validated before anything is written. Extraction goes to a sibling
    temporary folder which is renamed into place at the end, so an interrupted run leaves
    no half-extracted `dest` and simply starts again.
    """
    if dest.exists():
        raise DatasetError(f"{dest} already exists; not extracting over it")
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{archive} is not a readable zip archive: {exc}") from None
    with zf:
        infos = zf.infolist()
        tops = {PurePosixPath(i.filename).parts[0] for i in infos if i.filename.strip("/")}
        tops -= {"__MACOSX"} | JUNK_NAMES
        strip = next(iter(tops)) if len(tops) == 1 and any("/" in i.filename for i in infos) else ""
        plan = []
        for info in infos:
            target = _member_target(info.filename, strip)
            if target is None or info.is_dir():
                continue
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) == 0o120000:
                raise DatasetError(f"archive entry {info.filename!r} is a symbolic link; refusing")
            plan.append((info, target))

        tmp = dest.with_name(f".{dest.name}.extracting")
        if tmp.exists():
            shutil.rmtree(tmp)  # a previous interrupted extraction: the archive is the original
        tmp.mkdir(parents=True)
        for info, target in plan:
            out = tmp / target
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                shutil.rmtree(tmp)
                raise DatasetError(f"{archive}: cannot extract {info.filename}: {exc}") from None
            if progress is not None:
                progress.update(1)
    os.replace(tmp, dest)
    return len(plan)


# --- prepare ------------------------------------------------------------------------------


@dataclass
class PrepareReport:
    extracted_files: int = 0
    moved: Counter = field(default_factory=Counter)  # split -> images moved
    unplaced: list[str] = field(default_factory=list)  # "path: reason"

    @property
    def changed(self) -> bool:
        return bool(self.extracted_files or sum(self.moved.values()))


def _move(src: Path, dst: Path, report: PrepareReport, split: str, root: Path) -> None:
    """Rename src to dst unless dst exists: an image is never overwritten or deleted."""
    if dst.exists():
        report.unplaced.append(
            f"{src.relative_to(root).as_posix()}: {dst.relative_to(root).as_posix()} exists"
        )
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    report.moved[split] += 1


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def prepare(root: Path, archive: Path | None = None, progress_factory=None) -> PrepareReport:
    """Extract (when needed) and lay out TinyImageNet under `root`; safe to run again."""
    report = PrepareReport()
    if not root.exists():
        archive = archive or root.with_name(ARCHIVE_NAME)
        if not archive.is_file():
            raise DatasetError(
                f"neither {root} nor the archive {archive} exists; run download_dataset first"
            )
        bar = progress_factory(desc="extract", unit="file") if progress_factory else None
        try:
            report.extracted_files = extract_archive(archive, root, bar)
        finally:
            if bar is not None:
                bar.close()
    read_wnids(root)  # fail early on something that is not TinyImageNet

    train = root / "train"
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir()) if train.is_dir() else []:
        images = class_dir / "images"
        if images.is_dir():
            for src in sorted(images.iterdir()):
                _move(src, class_dir / src.name, report, "train", root)
            _remove_if_empty(images)

    val_images = root / "val" / "images"
    if val_images.is_dir():
        annotations = read_val_annotations(root)
        for src in sorted(val_images.iterdir()):
            wnid = annotations.get(src.name)
            if wnid is None:
                if src.name not in JUNK_NAMES:
                    rel = src.relative_to(root).as_posix()
                    report.unplaced.append(f"{rel}: not in val_annotations.txt")
                continue
            _move(src, root / "val" / wnid / src.name, report, "val", root)
        _remove_if_empty(val_images)
    return report


# --- scan and check -----------------------------------------------------------------------


def scan(root: Path) -> Scan:
    """Images of a prepared TinyImageNet tree, and every file that does not belong."""
    if not root.is_dir():
        raise DatasetError(f"{root} does not exist; run prepare_dataset first")
    result = Scan(root=root, classes=read_classes(root))
    known = {c.wnid for c in result.classes}

    def stray(path: Path) -> None:
        result.stray.append(path.relative_to(root).as_posix() + ("/" if path.is_dir() else ""))

    for entry in sorted(root.iterdir()):
        if entry.name not in TOP_LEVEL:
            stray(entry)

    for split in ("train", "val"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(split_dir.iterdir()):
            if split == "val" and class_dir.name == "val_annotations.txt":
                continue
            if not class_dir.is_dir() or class_dir.name not in known:
                stray(class_dir)
                continue
            for file in sorted(class_dir.iterdir()):
                if file.is_file() and is_image_name(file.name):
                    rel = file.relative_to(root).as_posix()
                    result.images.append(ImageEntry(split, class_dir.name, rel))
                elif not (split == "train" and file.name == f"{class_dir.name}_boxes.txt"):
                    stray(file)

    test_dir = root / "test"
    if test_dir.is_dir():
        for entry in sorted(test_dir.iterdir()):
            if entry.name != "images" or not entry.is_dir():
                stray(entry)
        for file in (
            sorted((test_dir / "images").iterdir()) if (test_dir / "images").is_dir() else []
        ):
            if file.is_file() and is_image_name(file.name):
                result.images.append(ImageEntry("test", None, file.relative_to(root).as_posix()))
            else:
                stray(file)
    return result


@dataclass
class Expectations:
    classes: int = EXPECTED_CLASSES
    train_per_class: int = EXPECTED_TRAIN_PER_CLASS
    val_per_class: int = EXPECTED_VAL_PER_CLASS
    test: int = EXPECTED_TEST
    size: tuple[int, int] = EXPECTED_SIZE


@dataclass
class CheckReport:
    root: str
    classes: int = 0
    images: dict[str, int] = field(default_factory=dict)  # split -> count
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> wnid -> count
    grayscale: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    missing_words: list[str] = field(default_factory=list)
    val_annotations_without_file: list[str] = field(default_factory=list)
    val_files_without_annotation: list[str] = field(default_factory=list)
    box_lines_without_file: int = 0
    stray: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def named(items: list[str]) -> str:
    """The first LISTED items, and how many more there are."""
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED:,} more" if len(items) > LISTED else "")


def _count_problem(report: CheckReport, split: str, expected: int, wnids: list[str]) -> None:
    counts = report.per_class.get(split, {})
    empty = [w for w in wnids if counts.get(w, 0) == 0]
    short = [w for w in wnids if 0 < counts.get(w, 0) < expected]
    over = [w for w in wnids if counts.get(w, 0) > expected]
    if empty:
        report.problems.append(f"{split}: {len(empty)} classes have no images: {named(empty)}")
    if short:
        got = sorted({counts[w] for w in short})
        report.problems.append(
            f"{split}: {len(short)} classes have fewer than {expected} images "
            f"({', '.join(map(str, got))} found): {named(short)}"
        )
    if over:
        report.problems.append(f"{split}: {len(over)} classes have more than {expected} images")


def check(
    root: Path,
    expect: Expectations | None = None,
    *,
    workers: int = 0,
    progress_factory=None,
) -> CheckReport:
    """Everything that makes `root` differ from a complete, clean TinyImageNet-200."""
    expect = expect or Expectations()
    found = scan(root)
    report = CheckReport(root=str(root), classes=len(found.classes), stray=found.stray)
    wnids = [c.wnid for c in found.classes]

    words = read_words(root, wnids)
    report.missing_words = [w for w in wnids if w not in words]
    for entry in found.images:
        report.images[entry.split] = report.images.get(entry.split, 0) + 1
        if entry.wnid is not None:
            by_class = report.per_class.setdefault(entry.split, {})
            by_class[entry.wnid] = by_class.get(entry.wnid, 0) + 1

    present = {e.path for e in found.images}
    if (root / "val" / "val_annotations.txt").is_file():
        annotations = read_val_annotations(root)
        report.val_annotations_without_file = [
            name for name, wnid in annotations.items() if f"val/{wnid}/{name}" not in present
        ]
        report.val_files_without_annotation = [
            e.path
            for e in found.images
            if e.split == "val" and annotations.get(PurePosixPath(e.path).name) != e.wnid
        ]
    elif report.images.get("val"):
        report.problems.append("val/val_annotations.txt is missing")
    for wnid in wnids:
        boxes = root / "train" / wnid / f"{wnid}_boxes.txt"
        if boxes.is_file():
            names = [line.split("\t", 1)[0] for line in _lines(boxes)]
            report.box_lines_without_file += sum(f"train/{wnid}/{n}" not in present for n in names)

    decode_images(
        report,
        root,
        [e.path for e in found.images],
        workers=workers,
        progress_factory=progress_factory,
        expected_size=expect.size,
    )
    _collect_problems(report, expect, wnids, root)
    return report


def decode_images(
    report: CheckReport,
    root: Path,
    paths: list[str],
    *,
    workers: int = 0,
    progress_factory=None,
    expected_size: tuple[int, int] | None = None,
) -> None:
    """Decode every image of `paths` (with a progress bar when given a factory) into
    `report`: the unreadable ones, the Pillow modes, and those of another size than
    `expected_size` when one is expected."""
    bar = (
        progress_factory(total=len(paths), desc="read images", unit="img")
        if progress_factory
        else None
    )
    modes: Counter = Counter()
    try:
        for info in read_image_infos(root, paths, decode=True, workers=workers, progress=bar):
            if info.error:
                report.unreadable.append(f"{info.path}: {info.error}")
                continue
            modes[info.mode] += 1
            if expected_size and (info.width, info.height) != expected_size:
                report.wrong_size.append(f"{info.path}: {info.width}x{info.height}")
    finally:
        if bar is not None:
            bar.close()
    report.modes = dict(modes)
    report.grayscale = modes.get("L", 0)


def _collect_problems(report: CheckReport, expect: Expectations, wnids: list[str], root: Path):
    p = report.problems
    if report.classes != expect.classes:
        p.append(f"wnids.txt lists {report.classes} classes, expected {expect.classes}")
    if report.missing_words:
        p.append(
            f"{len(report.missing_words)} wnids have no words.txt entry: "
            f"{named(report.missing_words)}"
        )
    _count_problem(report, "train", expect.train_per_class, wnids)
    _count_problem(report, "val", expect.val_per_class, wnids)
    if report.images.get("test", 0) != expect.test:
        p.append(f"test: {report.images.get('test', 0):,} images, expected {expect.test:,}")
    if (root / "val" / "images").is_dir() or any(
        (root / "train" / w / "images").is_dir() for w in wnids
    ):
        p.append("images are still in the archive's layout: run prepare_dataset")
    if report.val_annotations_without_file:
        p.append(
            f"{len(report.val_annotations_without_file):,} val annotation lines name missing "
            f"files: {named(report.val_annotations_without_file)}"
        )
    if report.val_files_without_annotation:
        p.append(
            f"{len(report.val_files_without_annotation):,} val files have no matching "
            f"annotation: {named(report.val_files_without_annotation)}"
        )
    if report.box_lines_without_file:
        p.append(f"{report.box_lines_without_file:,} train box lines name missing files")
    if report.unreadable:
        p.append(
            f"{len(report.unreadable)} unreadable or truncated images: {named(report.unreadable)}"
        )
    if report.wrong_size:
        w, h = expect.size
        p.append(f"{len(report.wrong_size)} images are not {w}x{h}: {named(report.wrong_size)}")
    if report.stray:
        p.append(f"{len(report.stray)} stray files or folders: {named(report.stray)}")
