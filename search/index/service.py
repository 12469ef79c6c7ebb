"""The FAISS index: build, publish (atomically), load lazily, search; and its manifest.

A published index is the folder `<TINYRAG_INDEX_DIR>/<name>` -- a symbolic link to an
immutable build folder `.builds/<name>-<stamp>/` holding::

    index.faiss      FAISS index; its ids are `Image` primary keys (IDMap), not positions
    embeddings.npy   float32 L2-normalised vectors, row-aligned with
    ids.npy          int64 `Image` ids (rebuild another index type without re-embedding)
    manifest.json    model id, dim, metric, index type and parameters, counts, provenance

Publishing swaps the link with one atomic rename, so a reader sees the old index or the new
one, never a half-written folder, whatever kills the build.

faiss and torch are imported inside the functions that use them: the URLconf imports this
module (through the search and describe services), and a page that never searches must not
pay for them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from search.errors import Unavailable
from search.ml.names import display_model_id

if TYPE_CHECKING:  # annotations only; the functions import them (see above)
    import faiss
    import torch

FORMAT_VERSION = 1
FLAT_MAX = 200_000  # exact search stays fast (~10 ms/query here at 100k x 512) up to this
EXACT_GEMV_MAX_QUERIES = 8  # flat search of this few queries runs as one multithreaded GEMV
# Results per query row: the answer (rows x k ids and scores) is allocated before FAISS runs;
# callers bound k far lower (TINYRAG_TOP_K_MAX), and a larger k is refused, never allocated.
SEARCH_K_MAX = 10_000
HNSW_BYTES_PER_LINK = 8  # two int32 neighbour ids per link and level-0 duplication, roughly


class SearchIndexError(Unavailable):
    """Base for index problems; the message says what to run."""


class IndexNotFoundError(SearchIndexError):
    pass


class IndexMismatchError(SearchIndexError):
    pass


class IndexCorruptError(SearchIndexError):
    pass


class IndexType(StrEnum):
    AUTO = "auto"
    FLAT = "flat"
    HNSW = "hnsw"
    IVFPQ = "ivfpq"


@dataclass(frozen=True)
class IndexManifest:
    name: str
    model_id: str
    dim: int
    index_type: str
    index_params: dict
    count: int
    dataset: str
    splits: list[str]
    created_at: str
    build_seconds: float = 0.0
    images_per_second: float = 0.0
    skipped: list[str] = field(default_factory=list)
    limit_per_class: int | None = None
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexCorruptError(
                f"manifest format {data.get('format_version')} is not "
                f"{FORMAT_VERSION}; rebuild the index"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- choosing and building ----------------------------------------------------------------


def choose_index_type(count: int, dim: int, memory_bytes: int | None = None) -> IndexType:
    """Exact up to FLAT_MAX vectors; then HNSW while vectors + graph fit in half the memory;
    then IVF-PQ (compressed) -- autofaiss's reasoning."""
    if count <= FLAT_MAX:
        return IndexType.FLAT
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    hnsw_bytes = count * (dim * 4 + 32 * HNSW_BYTES_PER_LINK)
    return IndexType.HNSW if hnsw_bytes < memory_bytes / 2 else IndexType.IVFPQ


def default_params(index_type: IndexType, count: int, dim: int) -> dict:
    if index_type == IndexType.HNSW:
        return {"M": 32, "efConstruction": 80, "efSearch": 64}
    if index_type == IndexType.IVFPQ:
        nlist = max(1, min(int(4 * math.sqrt(count)), count // 39))  # FAISS wants 39 per list
        m = next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim // 2 or m == 1)
        return {
            "nlist": nlist,
            "m": m,
            "nbits": 8 if count >= 256 * 39 else 4,
            "nprobe": min(nlist, 16),
        }
    return {}


def build_faiss_index(
    vectors: np.ndarray, ids: np.ndarray, index_type: IndexType, params: dict | None = None
) -> tuple[faiss.Index, dict]:
    """An inner-product index over unit vectors (= cosine), keyed by `ids`."""
    import faiss  # here, not at the top: the URLconf imports this module

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    count, dim = vectors.shape
    if index_type == IndexType.AUTO:
        index_type = choose_index_type(count, dim)
    params = {**default_params(index_type, count, dim), **(params or {})}
    if index_type == IndexType.FLAT:
        inner = faiss.IndexFlatIP(dim)
    elif index_type == IndexType.HNSW:
        inner = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = params["efConstruction"]
        inner.hnsw.efSearch = params["efSearch"]
    elif index_type == IndexType.IVFPQ:
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFPQ(
            quantizer,
            dim,
            params["nlist"],
            params["m"],
            params["nbits"],
            faiss.METRIC_INNER_PRODUCT,
        )
        inner.train(vectors)
        inner.nprobe = params["nprobe"]
    else:
        raise ValueError(f"unknown index type {index_type!r}")
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, ids)
    return index, {"type": str(index_type), **params}


def _set_search_params(index: faiss.Index, manifest: IndexManifest) -> None:
    """efSearch / nprobe are not all kept by write_index; apply the manifest's."""
    import faiss  # here, not at the top: the URLconf imports this module

    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if manifest.index_type == IndexType.HNSW and "efSearch" in manifest.index_params:
        inner.hnsw.efSearch = manifest.index_params["efSearch"]
    if manifest.index_type == IndexType.IVFPQ and "nprobe" in manifest.index_params:
        inner.nprobe = manifest.index_params["nprobe"]


# --- publishing ---------------------------------------------------------------------------


def write_index_folder(
    folder: Path, index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, manifest: IndexManifest
) -> None:
    import faiss  # here, not at the top: the URLconf imports this module

    folder.mkdir(parents=True, exist_ok=False)
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "embeddings.npy", np.asarray(vectors, dtype=np.float32))
    np.save(folder / "ids.npy", np.asarray(ids, dtype=np.int64))
    (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    for path in folder.iterdir():  # durable before the link points here
        with path.open("rb") as f:
            os.fsync(f.fileno())


def builds_dir(index_dir: Path) -> Path:
    return index_dir / ".builds"


def publish(staged: Path, index_dir: Path, name: str) -> Path:
    """Point `<index_dir>/<name>` at the staged folder with one atomic rename."""
    link = index_dir / name
    if link.exists() and not link.is_symlink():
        raise SearchIndexError(f"{link} is a real folder, not a published index link; move it away")
    previous = link.resolve() if link.is_symlink() else None
    tmp_link = index_dir / f".{name}.link-{os.getpid()}"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(staged.relative_to(index_dir))
    os.replace(tmp_link, link)
    if previous is not None and previous != staged.resolve() and previous.is_dir():
        shutil.rmtree(previous, ignore_errors=True)
    return link


# --- loading and searching ----------------------------------------------------------------


@dataclass
class LoadedIndex:
    folder: Path
    manifest: IndexManifest
    index: faiss.Index
    flat: FlatView | None = None


@dataclass(frozen=True)
class FlatView:
    """A flat index's own vectors (FAISS's storage, viewed, not copied) and their ids.

    FAISS scans a flat index for one query on one thread (~19 ms at 100k x 512 on a 2-core
    Xeon); the same exact inner products as one GEMV on torch's thread pool take about half.
    It holds the index it views, so the storage lives as long as the view; an index must not
    be changed while viewed (a `LoadedIndex` never is).
    """

    vectors: torch.Tensor
    ids: np.ndarray
    owner: faiss.Index = field(repr=False)

    @classmethod
    def of(cls, index: faiss.Index) -> FlatView | None:
        import faiss  # here, not at the top: the URLconf imports this module
        import torch  # likewise

        if not isinstance(index, faiss.IndexIDMap2):
            return None
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, faiss.IndexFlatIP) or inner.ntotal == 0:
            return None
        storage = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d)
        vectors = torch.from_numpy(storage.reshape(inner.ntotal, inner.d))
        return cls(vectors, faiss.vector_to_array(index.id_map), index)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch  # here, not at the top: the URLconf imports this module

        with torch.inference_mode():
            scores = torch.from_numpy(queries) @ self.vectors.T
            top = torch.topk(scores, min(k, len(self.ids)), dim=1)
        return top.values.numpy(), self.ids[top.indices.numpy()]


# Index errors reach pages and API answers: they name files within TINYRAG_INDEX_DIR, never
# the server's paths (`manage.py doctor` shows where TINYRAG_INDEX_DIR is).


def read_manifest(index_dir: Path, name: str) -> IndexManifest:
    path = index_dir / name / "manifest.json"
    if not path.is_file():
        raise IndexNotFoundError(
            f"no index named {name!r} in TINYRAG_INDEX_DIR; build it with: "
            f"python manage.py build_index --name {name}"
        )
    try:
        return IndexManifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as exc:
        raise IndexCorruptError(
            f"{name}/manifest.json is unreadable ({exc}); rebuild the index"
        ) from None


def load_index(index_dir: Path, name: str) -> LoadedIndex:
    import faiss  # here, not at the top: the URLconf imports this module

    folder = (index_dir / name).resolve()
    manifest = read_manifest(index_dir, name)
    try:
        index = faiss.read_index(str(folder / "index.faiss"))
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0].replace(str(folder), name)
        raise IndexCorruptError(
            f"{name}/index.faiss cannot be read ({reason}); "
            f"rebuild it with: python manage.py build_index --name {name}"
        ) from None
    if index.ntotal != manifest.count or index.d != manifest.dim:
        raise IndexCorruptError(
            f"index {name!r} holds {index.ntotal} vectors of dim {index.d} but its manifest says "
            f"{manifest.count} of dim {manifest.dim}; rebuild it"
        )
    _set_search_params(index, manifest)
    return LoadedIndex(folder, manifest, index, FlatView.of(index))


class IndexService:
    """One published index, loaded once per process and reloaded when a newer one appears."""

    def __init__(self, index_dir: Path, name: str, threads: int | None = None):
        self.index_dir, self.name = Path(index_dir), name
        self._lock = threading.Lock()
        self._loaded: LoadedIndex | None = None
        if threads:
            import faiss  # here, not at the top: the URLconf imports this module

            faiss.omp_set_num_threads(threads)

    def _current_folder(self) -> Path:
        return (self.index_dir / self.name).resolve()

    def get(self) -> LoadedIndex:
        folder = self._current_folder()
        loaded = self._loaded
        if loaded is not None and loaded.folder == folder:
            return loaded
        with self._lock:
            if self._loaded is None or self._loaded.folder != self._current_folder():
                self._loaded = load_index(self.index_dir, self.name)
            return self._loaded

    @property
    def manifest(self) -> IndexManifest:
        return self.get().manifest

    def published_manifest(self) -> IndexManifest:
        """The manifest of the index now published, without loading the index: the loaded
        one's when it is current, else read from its file (pages that only show what is
        published import no faiss)."""
        loaded = self._loaded
        if loaded is not None and loaded.folder == self._current_folder():
            return loaded.manifest
        return read_manifest(self.index_dir, self.name)

    def check_model(self, model_id: str, dim: int) -> None:
        manifest = self.manifest
        if manifest.model_id != model_id or manifest.dim != dim:
            raise IndexMismatchError(
                f"index {self.name!r} was built with {display_model_id(manifest.model_id)} "
                f"(dim {manifest.dim}) but the configured CLIP model is "
                f"{display_model_id(model_id)} (dim {dim}); rebuild it with: "
                f"python manage.py build_index --name {self.name} --restart"
            )

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        exclude_ids: set[int] | frozenset[int] = frozenset(),
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k scores and `Image` ids per query row, best first, in FAISS's order
        (scores, ids); -inf and -1 pad missing results.

        `allowed_ids` restricts the search to those ids inside FAISS (an IDSelector), so a
        class filter still returns k results when the class has k indexed images. ValueError for
        k outside 0..SEARCH_K_MAX.
        """
        import faiss  # here, not at the top: the URLconf imports this module

        if not 0 <= k <= SEARCH_K_MAX:
            raise ValueError(f"k must be between 0 and {SEARCH_K_MAX}; got {k}")
        loaded = self.get()
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if queries.shape[1] != loaded.manifest.dim:
            raise IndexMismatchError(
                f"query vectors have dim {queries.shape[1]}, index {self.name!r} has "
                f"{loaded.manifest.dim}"
            )
        want = max(1, min(k + len(exclude_ids), loaded.index.ntotal))
        if allowed_ids is None and loaded.flat and len(queries) <= EXACT_GEMV_MAX_QUERIES:
            scores, ids = loaded.flat.search(queries, want)
        elif allowed_ids is None:
            scores, ids = loaded.index.search(queries, want)
        else:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            params = (
                faiss.SearchParametersHNSW(sel=selector, efSearch=max(want, 64))
                if loaded.manifest.index_type == IndexType.HNSW
                else faiss.SearchParameters(sel=selector)
            )
            scores, ids = loaded.index.search(queries, want, params=params)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row in range(len(queries)):
            keep = [
                (i, s)
                for i, s in zip(ids[row], scores[row], strict=True)
                if i != -1 and int(i) not in exclude_ids
            ][:k]
            for col, (i, s) in enumerate(keep):
                out_ids[row, col], out_scores[row, col] = i, s
        return out_scores, out_ids


_services: dict[tuple[Path, str], IndexService] = {}
_services_lock = threading.Lock()


def get_index_service(name: str | None = None) -> IndexService:
    """The process-wide service for a published index (default: TINYRAG_INDEX_NAME)."""
    key = (Path(settings.TINYRAG_INDEX_DIR), name or settings.TINYRAG_INDEX_NAME)
    with _services_lock:
        if key not in _services:
            _services[key] = IndexService(*key, threads=settings.TINYRAG_FAISS_THREADS or None)
        return _services[key]


def clear_index_services() -> None:
    """Forget every loaded index (tests, between settings; the next search loads again)."""
    with _services_lock:
        _services.clear()
