"""The FAISS index: build, publish (atomically), load lazily, search; and its manifest.

A published index is the folder `<TINYRAG_INDEX_DIR>/<name>` -- a symbolic link to an
immutable build folder `.builds/<name>-<stamp>/` holding::

    index.faiss      FAISS index; its ids are `Image` primary keys (IDMap), not positions
    embeddings.npy   float32 L2-normalised vectors, row-aligned with
    ids.npy          int64 `Image` ids (rebuild another index type without re-embedding)
    hashes.npy       S64 content hash (sha256 hex) of each id's file when it was embedded:
                     the next build reuses the vectors of unchanged files (build.py)
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
EXACT_GEMV_MAX_QUERIES = 8  # flat search of this few queries runs as one multithreaded GEMV
# Results per query row: the answer (rows x k ids and scores) is allocated before FAISS runs;
# callers bound k far lower (TINYRAG_TOP_K_MAX), and a larger k is refused, never allocated.
SEARCH_K_MAX = 10_000
HNSW_BYTES_PER_LINK = 8  # two int32 neighbour ids per link and level-0 duplication, roughly
# Held-out queries of the recall check: at recall 0.99 its standard error is ~0.001 (10,000
# neighbours), and their exact search costs one pass over the collection.
RECALL_QUERIES = 1000
RECALL_K = 10
RECALL_SEED = 0  # the held-out sample is the same for the same collection: a rebuild agrees
ADD_CHUNK = 50_000  # vectors per add to a flat index, and per exact-search block: no full copy
TIE_TOLERANCE = 1e-6  # a result scoring the exact k-th score (a duplicate image) is as right
# efSearch values `auto` tries, smallest first, while a graph search still computes under a
# quarter of exact search's distances: denser collections need a wider search for one recall
# (embedding-like vectors at efSearch 64: recall@10 1.000 at 100k, 0.69 at 1M).
AUTO_EF_SEARCHES = (64, 128, 256, 512, 1024)
HNSW_MAX_DISTANCE_SHARE = 4


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
    # recall@10 of the HNSW graph against exact search on held-out vectors of the collection
    # (measured when HNSW was built or considered; None: not measured) and how many queried
    recall_at_10: float | None = None
    recall_queries: int = 0
    # How a file becomes a vector besides the model (build.embedding_recipe): builds with the
    # same model and recipe may reuse each other's vectors; "" for indexes built before.
    preprocessing: str = ""
    reused: int = 0  # vectors taken over from the previous published build
    embedded: int = 0  # vectors computed by this build (resumed shards included)
    # what the build was asked for: "auto" (index_type is what it chose) or a type itself;
    # "" for indexes built before it was recorded
    requested_type: str = ""
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


def choose_index_type(
    count: int, dim: int, memory_bytes: int | None = None, *, min_vectors: int | None = None
) -> IndexType:
    """What `auto` considers: exact up to `min_vectors` (TINYRAG_HNSW_MIN_VECTORS); then HNSW
    while vectors + graph fit in half the memory (kept only if its measured recall is high
    enough, see build_faiss_index); then exact while the vectors alone fit; then IVF-PQ
    (compressed) -- autofaiss's reasoning."""
    if min_vectors is None:
        min_vectors = settings.TINYRAG_HNSW_MIN_VECTORS
    if count <= min_vectors:
        return IndexType.FLAT
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    flat_bytes = count * dim * 4
    if flat_bytes + count * 32 * HNSW_BYTES_PER_LINK < memory_bytes / 2:
        return IndexType.HNSW
    return IndexType.FLAT if flat_bytes < memory_bytes / 2 else IndexType.IVFPQ


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
    vectors: np.ndarray,
    ids: np.ndarray,
    index_type: IndexType,
    params: dict | None = None,
    *,
    min_vectors: int | None = None,
    min_recall: float | None = None,
) -> tuple[faiss.Index, dict]:
    """An inner-product index over unit vectors (= cosine), keyed by `ids`, and what was built:
    ``{"type": ..., **its parameters}``, plus ``recall_at_10`` and ``recall_queries`` wherever
    an HNSW graph was built (build_hnsw).

    `auto` takes choose_index_type's candidate (`min_vectors`: TINYRAG_HNSW_MIN_VECTORS). An
    HNSW candidate is kept only when its recall@10 reaches `min_recall` (a share; default
    TINYRAG_HNSW_MIN_RECALL percent) at one of the efSearch values auto_ef_searches allows
    (the smallest that does is kept; an efSearch given in `params` is the only one tried);
    else the index is exact, and the recall that ruled HNSW out is still returned.
    """
    import faiss  # here, not at the top: the URLconf imports this module

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    count, dim = vectors.shape
    if index_type == IndexType.AUTO:
        index_type = choose_index_type(count, dim, min_vectors=min_vectors)
        if index_type == IndexType.HNSW:
            if min_recall is None:
                min_recall = settings.TINYRAG_HNSW_MIN_RECALL / 100
            given = params or {}
            params = {**default_params(IndexType.HNSW, count, dim), **given}
            tried = (
                (params["efSearch"],)
                if "efSearch" in given
                else auto_ef_searches(count, params["M"])
            )
            hnsw, built = build_hnsw(vectors, ids, params, ef_searches=tried, min_recall=min_recall)
            recall = built["recall_at_10"]
            if recall is not None and recall >= min_recall:
                return hnsw, built
            del hnsw  # its memory, before the exact index takes as much again
            index, flat = build_faiss_index(vectors, ids, IndexType.FLAT)
            return index, {
                **flat,
                "recall_at_10": recall,
                "recall_queries": built["recall_queries"],
            }
    params = {**default_params(index_type, count, dim), **(params or {})}
    if index_type == IndexType.FLAT:
        inner = faiss.IndexFlatIP(dim)
    elif index_type == IndexType.HNSW:
        return build_hnsw(vectors, ids, params)
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


def manifest_fields(built: dict) -> dict:
    """What build_faiss_index says it built, as IndexManifest's fields: `index_type`, the
    measured `recall_at_10` and `recall_queries` (None and 0 where none was measured), and
    the rest as `index_params`. `built` itself is left as it is."""
    params = dict(built)
    return {
        "index_type": params.pop("type"),
        "recall_at_10": params.pop("recall_at_10", None),
        "recall_queries": params.pop("recall_queries", 0),
        "index_params": params,
    }


def auto_ef_searches(count: int, m: int) -> tuple[int, ...]:
    """The efSearch values `auto` tries, smallest first: AUTO_EF_SEARCHES while a graph search
    would still compute under a quarter of the distances an exact search does (about efSearch
    x M of them, against `count`); the first is always tried."""
    return tuple(
        ef
        for n, ef in enumerate(AUTO_EF_SEARCHES)
        if n == 0 or ef * m * HNSW_MAX_DISTANCE_SHARE <= count
    )


def build_hnsw(
    vectors: np.ndarray,
    ids: np.ndarray,
    params: dict,
    *,
    ef_searches: tuple[int, ...] | None = None,
    min_recall: float = 1.0,
) -> tuple[faiss.Index, dict]:
    """An HNSW graph over the collection (`params`: M, efConstruction, efSearch), its recall
    checked (add_with_recall_check) at each of `ef_searches` in turn (default: params'
    efSearch alone) until one reaches `min_recall`; that one, or else the last, becomes its
    efSearch. Returns the index and ``{"type": "hnsw", **params, "recall_at_10": ...,
    "recall_queries": ...}`` (None and 0 when the collection is too small to hold any out)."""
    import faiss  # here, not at the top: the URLconf imports this module

    inner = faiss.IndexHNSWFlat(vectors.shape[1], params["M"], faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = params["efConstruction"]
    inner.hnsw.efSearch = params["efSearch"]
    index = faiss.IndexIDMap2(inner)
    recall, queries, ef = add_with_recall_check(
        index, vectors, ids, ef_searches=ef_searches or (params["efSearch"],), min_recall=min_recall
    )
    inner.hnsw.efSearch = ef
    return index, {
        "type": str(IndexType.HNSW),
        **params,
        "efSearch": ef,
        "recall_at_10": recall,
        "recall_queries": queries,
    }


def add_with_recall_check(
    index: faiss.Index,
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    ef_searches: tuple[int | None, ...] = (None,),
    min_recall: float = 1.0,
) -> tuple[float | None, int, int | None]:
    """Add the collection to an empty index, measuring on the way its recall@10 against exact
    search: a random sample of the collection's own vectors (RECALL_QUERIES, a tenth of a
    small collection) is held out, queries the index of the others, and is compared with the
    exact top 10 of those others; then it is added too. The queries are new to the graph, as a
    user's are, and no second build is needed. An HNSW index is measured at each efSearch of
    `ef_searches` in turn until one reaches `min_recall` (None: its own setting). Returns
    (recall, queries, the efSearch it was measured at); recall None and 0 queries below 10
    vectors (then the first efSearch)."""
    import faiss  # here, not at the top: the URLconf imports this module

    count = len(vectors)
    queries = min(RECALL_QUERIES, count // 10)
    if queries == 0:
        index.add_with_ids(vectors, ids)
        return None, 0, ef_searches[0]
    held = np.sort(np.random.default_rng(RECALL_SEED).choice(count, queries, replace=False))
    kept = np.ones(count, dtype=bool)
    kept[held] = False
    # one add call, though it copies the kept rows: HNSW builds a better graph from one batch
    # (recall@10 at 300k embedding-like vectors, efSearch 64: 0.958, against 0.922 from six
    # chunks of 50k)
    index.add_with_ids(vectors[kept], ids[kept])
    probe = vectors[held]
    k = min(RECALL_K, count - queries)
    exact_scores, exact_rows = exact_top_k(probe, vectors, k, skip=~kept)
    inner = faiss.downcast_index(index.index)
    for ef in ef_searches:
        if ef is not None:
            inner.hnsw.efSearch = ef
        found_scores, found_ids = index.search(probe, k)
        recall = round(recall_at_k(found_ids, found_scores, ids[exact_rows], exact_scores), 4)
        if recall >= min_recall:
            break
    index.add_with_ids(probe, ids[held])
    return recall, queries, ef


def exact_top_k(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    *,
    skip: np.ndarray | None = None,
    chunk: int = ADD_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of each query over the rows of `vectors` (minus the rows
    where `skip` is True), best first: (scores, row numbers). FAISS's brute-force kNN (one
    GEMM) chunk by chunk, so no copy of the collection is made."""
    import faiss  # here, not at the top: the URLconf imports this module

    best_scores = np.empty((len(queries), 0), dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        rows = np.arange(start, min(start + chunk, len(vectors)))
        if skip is not None:
            rows = rows[~skip[rows]]
        if not len(rows):
            continue
        scores, found = faiss.knn(
            queries, np.ascontiguousarray(vectors[rows]), min(k, len(rows)),
            metric=faiss.METRIC_INNER_PRODUCT,
        )  # fmt: skip
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, rows[found]], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, order, axis=1)
        best_rows = np.take_along_axis(rows, order, axis=1)
    return best_scores, best_rows


def recall_at_k(
    found_ids: np.ndarray, found_scores: np.ndarray, exact_ids: np.ndarray, exact_scores: np.ndarray
) -> float:
    """The share of the exact top-k (rows of `exact_ids`) that the approximate search found. A
    found result that scores the exact k-th score (within TIE_TOLERANCE) counts as right: among
    equal scores (duplicate images) the exact list's choice is arbitrary."""
    hits = 0
    for f_ids, f_scores, e_ids, e_scores in zip(
        found_ids, found_scores, exact_ids, exact_scores, strict=True
    ):
        exact, kth = set(e_ids.tolist()), e_scores[-1]
        hits += sum(
            1
            for i, s in zip(f_ids.tolist(), f_scores.tolist(), strict=True)
            if i != -1 and (i in exact or s >= kth - TIE_TOLERANCE)
        )
    return hits / exact_ids.size


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
    folder: Path,
    index: faiss.Index,
    vectors: np.ndarray,
    ids: np.ndarray,
    manifest: IndexManifest,
    *,
    hashes: np.ndarray | None = None,
) -> None:
    """Write a build folder; `hashes` (row-aligned content hashes) lets the next build reuse."""
    import faiss  # here, not at the top: the URLconf imports this module

    folder.mkdir(parents=True, exist_ok=False)
    faiss.write_index(index, str(folder / "index.faiss"))
    np.save(folder / "embeddings.npy", np.asarray(vectors, dtype=np.float32))
    np.save(folder / "ids.npy", np.asarray(ids, dtype=np.int64))
    if hashes is not None:
        np.save(folder / "hashes.npy", np.asarray(hashes, dtype="S64"))
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
    searched_as: str = ""  # the index type `index` is: the manifest's, or flat when exact

    def __post_init__(self):
        self.searched_as = self.searched_as or self.manifest.index_type


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


def load_index(index_dir: Path, name: str, *, exact: bool = False) -> LoadedIndex:
    """The published index `name`, ready to search. `exact`: searched exactly whatever its
    type -- a flat index as it is, any other as a flat index over its embeddings.npy."""
    import faiss  # here, not at the top: the URLconf imports this module

    folder = (index_dir / name).resolve()
    manifest = read_manifest(index_dir, name)
    if exact and manifest.index_type != IndexType.FLAT:
        index = exact_index(folder, name, manifest)
        return LoadedIndex(folder, manifest, index, FlatView.of(index), IndexType.FLAT.value)
    try:
        index = faiss.read_index(str(folder / "index.faiss"), mapped_read_flags())
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


def mapped_read_flags() -> int:
    """faiss.read_index's flags that memory-map index.faiss rather than copy it: the flat
    vectors, HNSW's storage and links, IVF-PQ's lists are then views of the file (faiss >= 1.11,
    IO_FLAG_MMAP_IFC; older faiss: 0, a copy), so the gunicorn workers of one machine share one
    copy in the page cache. Safe because a build folder is never written again once published;
    the publish that removes it unlinks the files, and a live mapping outlives the unlink. What
    stays per process: the ids (8 bytes a vector), IDMap2's reverse map, HNSW's levels."""
    import faiss  # here, not at the top: the URLconf imports this module

    return getattr(faiss, "IO_FLAG_MMAP_IFC", 0)


def exact_index(folder: Path, name: str, manifest: IndexManifest) -> faiss.Index:
    """A flat index over a published folder's embeddings.npy and ids.npy (the exact answer
    for an approximate index), read memory-mapped and added in chunks: the only full copy is
    FAISS's own."""
    import faiss  # here, not at the top: the URLconf imports this module

    try:
        vectors = np.load(folder / "embeddings.npy", mmap_mode="r")
        ids = np.load(folder / "ids.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"{name}/embeddings.npy or ids.npy cannot be read ({type(exc).__name__}); "
            f"rebuild it with: python manage.py build_index --name {name}"
        ) from None
    if vectors.shape != (manifest.count, manifest.dim) or ids.shape != (manifest.count,):
        raise IndexCorruptError(
            f"{name}/embeddings.npy holds {vectors.shape} and ids.npy {ids.shape}, but the "
            f"manifest says {manifest.count} vectors of dim {manifest.dim}; rebuild it"
        )
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dim))
    for start in range(0, manifest.count, ADD_CHUNK):
        part = slice(start, start + ADD_CHUNK)
        index.add_with_ids(
            np.ascontiguousarray(vectors[part], dtype=np.float32),
            np.ascontiguousarray(ids[part], dtype=np.int64),
        )
    return index


class IndexService:
    """One published index, loaded once per process and reloaded when a newer one appears.

    `exact`: every search is exact (the evaluation's default), whatever type the published
    index is: an approximate one is searched as a flat index over its embeddings.npy.
    """

    def __init__(
        self, index_dir: Path, name: str, threads: int | None = None, *, exact: bool = False
    ):
        self.index_dir, self.name, self.exact = Path(index_dir), name, exact
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
                self._loaded = load_index(self.index_dir, self.name, exact=self.exact)
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
            ef_search = loaded.manifest.index_params.get("efSearch", 64)  # as build chose it
            if loaded.searched_as == IndexType.HNSW:
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(want, ef_search))
            elif loaded.searched_as == IndexType.IVFPQ:  # IVF refuses plain SearchParameters
                nprobe = loaded.manifest.index_params.get("nprobe", 1)
                params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
            else:
                params = faiss.SearchParameters(sel=selector)
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


_services: dict[tuple[Path, str, bool], IndexService] = {}
_services_lock = threading.Lock()


def get_index_service(name: str | None = None, *, exact: bool = False) -> IndexService:
    """The process-wide service for a published index (default: TINYRAG_INDEX_NAME);
    `exact`: the one that searches it exactly (IndexService)."""
    key = (Path(settings.TINYRAG_INDEX_DIR), name or settings.TINYRAG_INDEX_NAME, exact)
    with _services_lock:
        if key not in _services:
            _services[key] = IndexService(
                *key[:2], threads=settings.TINYRAG_FAISS_THREADS or None, exact=exact
            )
        return _services[key]


def clear_index_services() -> None:
    """Forget every loaded index (tests, between settings; the next search loads again)."""
    with _services_lock:
        _services.clear()
