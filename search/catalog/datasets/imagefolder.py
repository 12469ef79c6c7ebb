"""A generic image folder: `<root>/<class>/<image>`, or `<root>/<split>/<class>/<image>`."""

from __future__ import annotations

from pathlib import Path

from search.catalog.datasets import DatasetError
from search.catalog.datasets.layout import (
    JUNK_NAMES,
    SPLITS,
    ClassEntry,
    ImageEntry,
    Scan,
    is_image_name,
)


def scan_imagefolder(root: Path) -> Scan:
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    scan = Scan(root=root)
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    tops = split_dirs or [root]
    wnids: set[str] = set()
    for top in tops:
        split = top.name if split_dirs else "train"
        for entry in sorted(top.iterdir()):
            if entry.name in JUNK_NAMES:
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
            if e not in split_dirs and e.name not in JUNK_NAMES
        )
    scan.classes = [ClassEntry(w, (w.replace("_", " "),)) for w in sorted(wnids)]
    if not scan.images:
        raise DatasetError(f"no images found under {root} (expected <class>/<image> folders)")
    return scan
