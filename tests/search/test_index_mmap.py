"""search/index/service.py: a published index is read memory-mapped (one copy in the page
cache for every worker), answers exactly as a copied one, and survives a republish."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from search.index import service as fi
from search.index.service import IndexService, IndexType
from tests.search.test_index import clustered, publish

TYPES = [IndexType.FLAT, IndexType.HNSW, IndexType.IVFPQ]


def mapped_files() -> set[str]:
    """The files this process has mapped, as /proc/self/maps names them."""
    with open("/proc/self/maps") as maps:
        fields = (line.split(maxsplit=5) for line in maps)
        return {parts[5].strip() for parts in fields if len(parts) == 6}


def copied(tmp_path: Path, link: Path) -> faiss.Index:
    """The published index read into memory (no flags), searched as the service searches."""
    index = faiss.read_index(str(link / "index.faiss"))
    fi._set_search_params(index, fi.read_manifest(tmp_path, "idx"))
    return index


def world(tmp_path: Path, index_type: IndexType, seed: int = 0):
    vectors = clustered(2000, 32, seed=seed)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3  # ids, not row numbers
    link = publish(tmp_path, vectors, ids, index_type=index_type)
    return link, vectors, ids


@pytest.mark.parametrize("index_type", TYPES)
def test_a_published_index_is_mapped_from_its_file_not_copied(tmp_path, index_type):
    link, _, _ = world(tmp_path, index_type)
    loaded = fi.load_index(tmp_path, "idx")
    assert str(link.resolve() / "index.faiss") in mapped_files()
    assert loaded.index.ntotal == 2000


@pytest.mark.parametrize("index_type", TYPES)
def test_the_mapped_index_answers_exactly_as_the_copied_one(tmp_path, index_type):
    link, vectors, ids = world(tmp_path, index_type)
    in_memory = copied(tmp_path, link)
    service = IndexService(tmp_path, "idx")
    queries = clustered(20, 32, seed=5)
    for rows in (queries[:1], queries):  # one query (the flat view's GEMV), a batch (FAISS)
        scores, found = service.search(rows, 10)
        want_scores, want_ids = in_memory.search(rows, 10)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index_type", [IndexType.FLAT, IndexType.HNSW])
def test_a_filtered_search_of_the_mapped_index_answers_as_the_copied_one(tmp_path, index_type):
    link, vectors, ids = world(tmp_path, index_type)
    in_memory = copied(tmp_path, link)
    service = IndexService(tmp_path, "idx")
    queries = clustered(20, 32, seed=5)
    allowed = ids[::3]
    selector = faiss.IDSelectorBatch(allowed)
    params = (
        faiss.SearchParametersHNSW(sel=selector, efSearch=64)
        if index_type == IndexType.HNSW
        else faiss.SearchParameters(sel=selector)
    )
    scores, found = service.search(queries, 10, allowed_ids=allowed)
    want_scores, want_ids = in_memory.search(queries, 10, params=params)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    assert np.isin(found, allowed).all()


def test_a_filtered_ivfpq_search_keeps_the_best_allowed_of_the_probed_lists(tmp_path):
    """IVF-PQ takes its own search parameters (nprobe with the selector): the answer is the
    unfiltered search of the same lists, all of them ranked, with the others left out."""
    link, _, ids = world(tmp_path, IndexType.IVFPQ)
    in_memory = copied(tmp_path, link)
    queries = clustered(20, 32, seed=5)
    allowed = ids[::3]
    scores, found = IndexService(tmp_path, "idx").search(queries, 10, allowed_ids=allowed)
    every_score, every_id = in_memory.search(queries, in_memory.ntotal)
    for row in range(len(queries)):
        keep = np.isin(every_id[row], allowed)
        want = every_score[row][keep][:10]
        assert np.isin(found[row][found[row] != -1], allowed).all()
        np.testing.assert_allclose(scores[row][: len(want)], want, rtol=1e-5, atol=1e-6)


def test_a_mapped_index_survives_a_republish_that_deletes_its_build(tmp_path):
    link, vectors, ids = world(tmp_path, IndexType.FLAT)
    service = IndexService(tmp_path, "idx")
    old = service.get()
    old_file = str(old.folder / "index.faiss")
    queries = vectors[[0, 10, 500]]
    before = old.index.search(queries, 5)
    publish(tmp_path, clustered(300, 32, seed=9), np.arange(300, dtype=np.int64))
    assert not old.folder.exists()  # publish removed the old build ...
    assert f"{old_file} (deleted)" in mapped_files()  # ... whose mapping is still live
    after = old.index.search(queries, 5)  # a search that began before the swap finishes
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1][:, 0].tolist() == ids[[0, 10, 500]].tolist()  # each vector finds itself
    new = service.get()
    assert new.index.ntotal == 300
    assert str(new.folder / "index.faiss") in mapped_files()
