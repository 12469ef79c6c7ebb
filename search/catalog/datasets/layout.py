"""What a prepared collection holds on disk: its classes and its image files."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".webp", ".bmp", ".gif"})
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
SPLITS = ("train", "val", "test")


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ClassEntry:
    wnid: str
    names: tuple[str, ...]  # English, the name first
    # Names in the other page languages, as ImageClass.translations holds them
    # (search/catalog/class_names.py).
    translations: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.names[0] if self.names else self.wnid


@dataclass(frozen=True)
class ImageEntry:
    split: str
    wnid: str | None  # None for unlabelled images (TinyImageNet's test split)
    path: str  # POSIX, relative to the dataset root


@dataclass
class Scan:
    """The classes and images found under `root`, and whatever did not fit the layout."""

    root: Path
    classes: list[ClassEntry] = field(default_factory=list)
    images: list[ImageEntry] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageInfo:
    path: str
    width: int = 0
    height: int = 0
    mode: str = ""
    error: str = ""  # non-empty when the file cannot be decoded
    # Read with `digest` only (0 and "" otherwise): the file's stat and its bytes' sha256.
    size: int = 0
    mtime_ns: int = 0
    content_hash: str = ""


# What a corrupt, truncated, missing or hostile file raises in Pillow; DecompressionBombError
# (a header claiming billions of pixels) is no OSError.
READ_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    PILImage.DecompressionBombError,
)


def read_image_info(root: Path, path: str, *, decode: bool, digest: bool = False) -> ImageInfo:
    """Size and mode of an image; with `decode`, also prove every pixel can be read; with
    `digest`, also the file's size, mtime and sha256, from the same single read."""
    try:
        if not digest:
            with PILImage.open(root / path) as img:
                if decode:
                    img.load()
                return ImageInfo(path, img.width, img.height, img.mode)
        with open(root / path, "rb") as file:
            stat = os.fstat(file.fileno())  # the stat of the bytes hashed, not a later one
            data = file.read()
        with PILImage.open(io.BytesIO(data)) as img:
            if decode:
                img.load()
            return ImageInfo(
                path,
                img.width,
                img.height,
                img.mode,
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                content_hash=hashlib.sha256(data).hexdigest(),
            )
    except UnidentifiedImageError:  # its message names the in-memory copy, not the file
        return ImageInfo(path, error="cannot identify image file")
    except READ_ERRORS as exc:
        return ImageInfo(path, error=str(exc) or type(exc).__name__)


def _read_chunk(args: tuple[Path, list[str], bool, bool]) -> list[ImageInfo]:
    root, paths, decode, digest = args
    return [read_image_info(root, p, decode=decode, digest=digest) for p in paths]


def read_image_infos(
    root: Path,
    paths: list[str],
    *,
    decode: bool,
    digest: bool = False,
    workers: int = 0,
    progress=None,
):
    """Yield ImageInfo for `paths` in order; `workers` > 1 spreads decoding over processes."""
    chunk = 512  # big enough to amortise inter-process pickling, small enough for a live bar
    chunks = [(root, paths[i : i + chunk], decode, digest) for i in range(0, len(paths), chunk)]
    if workers > 1 and len(paths) > chunk:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for infos in pool.map(_read_chunk, chunks):
                if progress is not None:
                    progress.update(len(infos))
                yield from infos
    else:
        for args in chunks:
            infos = _read_chunk(args)
            if progress is not None:
                progress.update(len(infos))
            yield from infos
