"""Fetch a dataset archive: resumable HTTP download, or a local copy, verified either way.

A download streams into `<name>.part`; an interrupted one is resumed with an HTTP Range request;
only a complete, verified file is renamed (atomically) to its final name, so `<name>` never
holds a partial archive.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from search.catalog.datasets import DatasetError

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
CHUNK_SIZE = 1 << 20  # 1 MiB: few syscalls, smooth progress

ProgressFactory = Callable[..., tqdm]


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    resumed_from: int = 0
    already_present: bool = False


def filename_from_url(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DatasetError(f"cannot tell a file name from {url!r}; the URL must end in one")
    return name


def sha256_of(path: Path, progress: ProgressFactory = tqdm) -> str:
    digest = hashlib.sha256()
    with (
        path.open("rb") as f,
        progress(
            total=path.stat().st_size, unit="B", unit_scale=True, desc="sha256", leave=False
        ) as bar,
    ):
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _verify_sha256(path: Path, expected: str | None, progress: ProgressFactory) -> None:
    if expected is None:
        return
    actual = sha256_of(path, progress)
    if actual.lower() != expected.lower():
        raise DatasetError(f"{path.name}: sha256 is {actual}, expected {expected}")


def download(
    url: str,
    dest_dir: Path,
    *,
    sha256: str | None = None,
    timeout: float = 15.0,
    progress: ProgressFactory = tqdm,
) -> FetchResult:
    """Download `url` into `dest_dir`, resuming a previous `.part` file when there is one."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / filename_from_url(url)
    if final.exists():
        _verify_sha256(final, sha256, progress)
        return FetchResult(final, final.stat().st_size, already_present=True)

    part = final.with_name(final.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset and _range_total(exc.headers) == offset:
            response = None  # the .part file already holds every byte
        else:
            raise DatasetError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"could not reach {url}: {reason}") from None

    total: int | None = offset
    if response is not None:
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            _stream(response, part, offset, total, progress)

    size = part.stat().st_size
    if total is not None and size != total:
        raise DatasetError(
            f"download of {url} stopped at {size:,} of {total:,} bytes; "
            f"run the same command again to resume from {part.name}"
        )
    try:
        _verify_sha256(part, sha256, progress)
    except DatasetError:
        part.unlink()  # resuming a corrupt file cannot mend it
        raise
    os.replace(part, final)
    return FetchResult(final, size, resumed_from=offset)


def _range_total(headers) -> int | None:
    """The total size from a `Content-Range: bytes */TOTAL` header, if any."""
    value = (headers or {}).get("Content-Range", "")
    try:
        return int(value.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


def _stream(response, part: Path, offset: int, total: int | None, progress) -> None:
    mode = "ab" if offset else "wb"
    with (
        part.open(mode) as f,
        progress(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name) as bar,
    ):
        try:
            while chunk := response.read(CHUNK_SIZE):
                f.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException):
            pass  # keep what arrived: the size check below reports it and a rerun resumes
        f.flush()
        os.fsync(f.fileno())


def copy_local_archive(
    archive: Path,
    dest_dir: Path,
    *,
    sha256: str | None = None,
    progress: ProgressFactory = tqdm,
) -> FetchResult:
    """Check that `archive` is a readable zip and place a copy in `dest_dir`."""
    archive = archive.expanduser().resolve()
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist")
    if not zipfile.is_zipfile(archive):
        raise DatasetError(f"{archive} is not a zip archive")
    with zipfile.ZipFile(archive) as zf:
        broken = zf.testzip()
    if broken is not None:
        raise DatasetError(f"{archive} is corrupt: {broken} fails its CRC check")
    _verify_sha256(archive, sha256, progress)

    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir.resolve() / archive.name
    if final == archive:
        return FetchResult(final, final.stat().st_size, already_present=True)
    part = final.with_name(final.name + ".part")
    with (
        archive.open("rb") as src,
        part.open("wb") as dst,
        progress(
            total=archive.stat().st_size, unit="B", unit_scale=True, desc=f"copy {archive.name}"
        ) as bar,
    ):
        while chunk := src.read(CHUNK_SIZE):
            dst.write(chunk)
            bar.update(len(chunk))
    shutil.copystat(archive, part)
    os.replace(part, final)
    return FetchResult(final, final.stat().st_size)


def fetch_archive(
    *,
    dest_dir: Path,
    archive: Path | None = None,
    url: str = TINYIMAGENET_URL,
    sha256: str | None = None,
    timeout: float = 15.0,
    progress: ProgressFactory = tqdm,
) -> FetchResult:
    """The archive into `dest_dir`: a copy of the local `archive` when one is given (offline),
    else a (resumed) download of `url`."""
    if archive is not None:
        return copy_local_archive(archive, dest_dir, sha256=sha256, progress=progress)
    return download(url, dest_dir, sha256=sha256, timeout=timeout, progress=progress)
