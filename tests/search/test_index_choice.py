"""The index type chosen by measured recall (search/index/service.py): `auto` keeps HNSW only
where its recall@10 against exact search, measured at build time on held-out vectors of the
collection, reaches TINYRAG_HNSW_MIN_RECALL; the manifest records that recall; an exact
search of any published index stays available."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from django.core.management import call_command

from search.index import service as fi
from search.index.service import IndexManifest, IndexService, IndexType


def low_dimensional_clusters(n: int, dim: int = 64, *, seed: int = 0) -> np.ndarray:
    """Unit vectors like embeddings: 20 class directions, each spread over a 4-dimensional
    subspace of its own (a low intrinsic dimension is what lets a graph find neighbours).
    The same geometry for every seed; the seed draws the points."""
    geometry = np.random.default_rng(1234)
    centres = geometry.normal(size=(20, dim))
    bases = geometry.normal(size=(20, 4, dim)) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 20, n)
    x = centres[label] / np.sqrt(dim) + np.einsum(
        "nl,nld->nd", 0.5 * rng.normal(size=(n, 4)), bases[label]
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def isotropic_noise(n: int, dim: int = 64, *, seed: int = 0) -> np.ndarray:
    """The hard case for a graph: no structure at all."""
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def numpy_top10(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact top-10 ids by brute force in numpy: no FAISS involved."""
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]]


def publish(index_dir, vectors, ids, index, params) -> None:
    manifest = IndexManifest(
        name="idx", model_id="m", dim=vectors.shape[1], **fi.manifest_fields(params),
        count=len(ids), dataset="d", splits=["train"], created_at=fi.now_iso(),
    )  # fmt: skip
    staged = fi.builds_dir(index_dir) / f"idx-{manifest.index_type}"
    fi.write_index_folder(staged, index, vectors, ids, manifest)
    fi.publish(staged, index_dir, "idx")


def test_auto_takes_hnsw_on_a_clustered_collection_above_the_minimum(settings):
    settings.TINYRAG_HNSW_MIN_VECTORS, settings.TINYRAG_HNSW_MIN_RECALL = 2_000, 99
    vectors = low_dimensional_clusters(3_000)
    ids = np.arange(3_000, dtype=np.int64) * 7 + 1  # ids are Image keys, not positions

    index, params = fi.build_faiss_index(vectors, ids, IndexType.AUTO)

    assert params["type"] == "hnsw"
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat)
    assert params["recall_at_10"] >= 0.99
    assert params["recall_queries"] == 300  # a tenth of a collection this small
    # the held-out vectors went in after the check: every vector is there, once
    assert sorted(faiss.vector_to_array(index.id_map)) == list(ids)


def test_the_chosen_hnsw_answers_like_exact_search_for_the_recorded_share(settings, tmp_path):
    settings.TINYRAG_HNSW_MIN_VECTORS, settings.TINYRAG_HNSW_MIN_RECALL = 2_000, 99
    vectors = low_dimensional_clusters(3_000)
    ids = np.arange(3_000, dtype=np.int64) + 100
    index, params = fi.build_faiss_index(vectors, ids, IndexType.AUTO)
    publish(tmp_path, vectors, ids, index, params)
    queries = low_dimensional_clusters(200, seed=5)  # new points, not in the collection

    service = IndexService(tmp_path, "idx")
    assert service.get().searched_as == "hnsw"
    found = np.stack([service.search(q, k=10)[1][0] for q in queries])  # one query at a time
    exact = numpy_top10(queries, vectors, ids)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.99
    assert (found[:, 0] == exact[:, 0]).mean() >= 0.99


def test_auto_falls_back_to_exact_when_the_graph_misses_and_records_why(settings):
    settings.TINYRAG_HNSW_MIN_VECTORS, settings.TINYRAG_HNSW_MIN_RECALL = 1_000, 99
    vectors = isotropic_noise(2_000)
    ids = np.arange(2_000, dtype=np.int64)
    queries = isotropic_noise(50, seed=3)

    # a sparse graph searched greedily: on noise it misses many true neighbours
    index, params = fi.build_faiss_index(
        vectors, ids, IndexType.AUTO, {"M": 4, "efConstruction": 8, "efSearch": 1}
    )

    assert params["type"] == "flat"
    assert 0 <= params["recall_at_10"] < 0.99
    assert params["recall_queries"] == 200
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexFlatIP)
    np.testing.assert_array_equal(index.search(queries, 10)[1], numpy_top10(queries, vectors, ids))


def test_a_threshold_of_100_percent_rejects_a_graph_that_misses_one_neighbour(settings):
    settings.TINYRAG_HNSW_MIN_VECTORS, settings.TINYRAG_HNSW_MIN_RECALL = 1_000, 100
    vectors = isotropic_noise(2_000, seed=1)
    index, params = fi.build_faiss_index(
        vectors, np.arange(2_000), IndexType.AUTO, {"M": 8, "efConstruction": 40, "efSearch": 16}
    )
    assert params["recall_at_10"] < 1.0
    assert params["type"] == "flat"


def test_up_to_the_minimum_auto_is_exact_without_a_recall_check(settings):
    settings.TINYRAG_HNSW_MIN_VECTORS = 3_000
    vectors = low_dimensional_clusters(3_000)
    index, params = fi.build_faiss_index(vectors, np.arange(3_000), IndexType.AUTO)
    assert params == {"type": "flat"}


def test_an_explicit_hnsw_is_kept_whatever_its_recall_and_records_it():
    vectors = isotropic_noise(500)
    index, params = fi.build_faiss_index(
        vectors, np.arange(500), IndexType.HNSW, {"M": 4, "efConstruction": 8, "efSearch": 1}
    )
    assert params["type"] == "hnsw"
    assert params["recall_queries"] == 50
    assert 0 <= params["recall_at_10"] < 1.0
    assert index.ntotal == 500


def test_auto_widens_the_search_only_while_it_stays_far_cheaper_than_exact():
    # efSearch x M x 4 must stay within the collection: 128 x 32 x 4 = 16,384
    assert fi.auto_ef_searches(16_383, 32) == (64,)
    assert fi.auto_ef_searches(16_384, 32) == (64, 128)
    assert fi.auto_ef_searches(100_000, 32) == (64, 128, 256, 512)
    assert fi.auto_ef_searches(1_000_000, 32) == (64, 128, 256, 512, 1024)
    assert fi.auto_ef_searches(10, 32) == (64,)  # the first is always tried


def test_the_recall_check_keeps_the_first_efsearch_that_reaches_the_threshold():
    vectors = isotropic_noise(2_000)
    params = {"M": 8, "efConstruction": 40, "efSearch": 10}
    # efSearch 10 on noise misses neighbours; 400 of 2,000 vectors hardly does
    index, built = fi.build_hnsw(
        vectors, np.arange(2_000), params, ef_searches=(10, 400), min_recall=0.95
    )
    assert built["efSearch"] == 400
    assert built["recall_at_10"] >= 0.95
    assert faiss.downcast_index(index.index).hnsw.efSearch == 400  # searched as recorded
    _, narrow = fi.build_hnsw(vectors, np.arange(2_000), params, ef_searches=(10,))
    assert narrow["recall_at_10"] < 0.95  # so 10 was tried and did not reach it
    assert narrow["efSearch"] == 10


def test_the_recall_check_queries_vectors_held_out_of_the_index():
    """A flat index finds the exact neighbours, so its measured recall is 1.0 -- unless a query
    were in the index it searches: it would find itself first, a result the exact top 10 of
    the other vectors cannot hold, and the recall would be at most 0.9."""
    vectors = isotropic_noise(1_000)
    ids = np.arange(1_000, dtype=np.int64) + 50
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(64))
    recall, queries, _ = fi.add_with_recall_check(index, vectors, ids)
    assert (recall, queries) == (1.0, 100)
    assert sorted(faiss.vector_to_array(index.id_map)) == list(ids)


def test_recall_counts_the_exact_top_k_found_and_ties_with_its_last():
    found_ids = np.array([[1, 2, 3], [4, 5, 9], [7, 8, 0]])
    found_scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.1], [0.9, 0.8, 0.5]])
    exact_ids = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 6]])
    exact_scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.9, 0.8, 0.5]])
    # row 1 misses 6 (9 scores 0.1 < 0.7); row 2's 0 ties 6's score: a duplicate, as right
    assert fi.recall_at_k(found_ids, found_scores, exact_ids, exact_scores) == 8 / 9


def test_exact_top_k_skips_rows_and_agrees_with_numpy_across_chunks():
    vectors, queries = isotropic_noise(1_000), isotropic_noise(30, seed=9)
    skip = np.zeros(1_000, dtype=bool)
    skip[::3] = True
    scores, rows = fi.exact_top_k(queries, vectors, 10, skip=skip, chunk=128)
    brute = queries @ vectors.T
    brute[:, skip] = -np.inf
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1)[:, :10])
    np.testing.assert_allclose(scores, -np.sort(-brute, axis=1)[:, :10], atol=1e-5)


def test_a_manifest_without_the_recall_fields_still_loads():
    manifest = IndexManifest(
        name="idx", model_id="m", dim=4, index_type="flat", index_params={}, count=1,
        dataset="d", splits=["train"], created_at=fi.now_iso(),
    )  # fmt: skip
    text = manifest.to_json().replace('"recall_at_10": null,', "")
    text = text.replace('"recall_queries": 0,', "")
    assert "recall" not in text
    loaded = IndexManifest.from_json(text)
    assert (loaded.recall_at_10, loaded.recall_queries) == (None, 0)


def test_an_exact_service_searches_an_hnsw_index_exactly(tmp_path):
    vectors = isotropic_noise(2_000)
    ids = np.arange(2_000, dtype=np.int64) * 3
    index, params = fi.build_faiss_index(
        vectors, ids, IndexType.HNSW, {"M": 4, "efConstruction": 8, "efSearch": 1}
    )
    publish(tmp_path, vectors, ids, index, params)
    queries = isotropic_noise(40, seed=4)
    expected = numpy_top10(queries, vectors, ids)

    served, exact = IndexService(tmp_path, "idx"), IndexService(tmp_path, "idx", exact=True)
    assert (served.get().searched_as, exact.get().searched_as) == ("hnsw", "flat")
    assert exact.manifest.index_type == "hnsw"  # it says what is published
    assert (served.search(queries, k=10)[1] != expected).any()  # the sparse graph misses
    np.testing.assert_array_equal(exact.search(queries, k=10)[1], expected)  # many at once
    np.testing.assert_array_equal(exact.search(queries[0], k=10)[1][0], expected[0])  # one
    # a class filter searches exactly too (the selector on the flat index)
    allowed = ids[::2]
    brute = queries[:3] @ vectors[::2].T
    np.testing.assert_array_equal(
        exact.search(queries[:3], k=5, allowed_ids=allowed)[1],
        allowed[np.argsort(-brute, axis=1)[:, :5]],
    )


def test_an_exact_service_refuses_embeddings_that_disagree_with_the_manifest(tmp_path):
    vectors = low_dimensional_clusters(100)
    index, params = fi.build_faiss_index(vectors, np.arange(100), IndexType.HNSW)
    publish(tmp_path, vectors, np.arange(100), index, params)
    np.save(tmp_path / "idx" / "embeddings.npy", vectors[:90])
    with pytest.raises(fi.IndexCorruptError, match="manifest says 100 vectors of dim 64") as e:
        IndexService(tmp_path, "idx", exact=True).get()
    assert str(tmp_path) not in str(e.value)


def test_get_index_service_keeps_the_exact_service_apart(settings, tmp_path):
    settings.TINYRAG_INDEX_DIR = tmp_path
    fi.clear_index_services()
    try:
        assert fi.get_index_service("idx", exact=True) is fi.get_index_service("idx", exact=True)
        assert fi.get_index_service("idx", exact=True) is not fi.get_index_service("idx")
        assert not fi.get_index_service("idx").exact
    finally:
        fi.clear_index_services()


@pytest.mark.django_db
def test_build_index_records_the_recall_of_an_hnsw_index(dataset_imported, clip_settings):
    call_command(
        "build_index", "--name", "tiny", "--workers", "0", "--batch-size", "4",
        "--index-type", "hnsw", verbosity=0,
    )  # fmt: skip
    manifest = fi.read_manifest(clip_settings.TINYRAG_INDEX_DIR, "tiny")
    assert manifest.index_type == "hnsw"
    assert manifest.recall_queries == 2  # 20 images: a tenth held out
    assert 0.0 <= manifest.recall_at_10 <= 1.0
    assert "recall_at_10" not in manifest.index_params  # a field of its own, not a parameter


def test_index_choice_says_the_type_and_the_recall_behind_it():
    from dataclasses import replace

    from search.index.selectors import index_choice

    manifest = IndexManifest(
        name="idx", model_id="m", dim=4, index_type="hnsw", index_params={}, count=1,
        dataset="d", splits=["train"], created_at=fi.now_iso(),
        recall_at_10=0.9981, recall_queries=1000,
    )  # fmt: skip
    assert index_choice(manifest) == (
        "hnsw, recall@10 0.998 against exact search (1,000 held-out vectors)"
    )
    assert index_choice(replace(manifest, index_type="flat", recall_at_10=0.9)) == (
        "flat (HNSW's recall@10 0.900 against exact search (1,000 held-out vectors) was too low)"
    )
    assert index_choice(replace(manifest, recall_at_10=None, recall_queries=0)) == "hnsw"
