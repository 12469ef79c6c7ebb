"""search/index/service.py: index types, atomic publishing, lazy loading, reloads, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from search.index import service as fi
from search.index.service import IndexManifest, IndexService, IndexType


def clustered(n: int, dim: int, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def manifest(name="idx", model="m", dim=16, count=0, index_type="flat", params=None):
    return IndexManifest(
        name=name,
        model_id=model,
        dim=dim,
        index_type=index_type,
        index_params=params or {},
        count=count,
        dataset="d",
        splits=["train"],
        created_at=fi.now_iso(),
    )


def publish(index_dir, vectors, ids, name="idx", index_type=IndexType.FLAT, model="m"):
    index, params = fi.build_faiss_index(vectors, ids, index_type)
    kind = params.pop("type")
    staged = fi.builds_dir(index_dir) / f"{name}-{np.random.default_rng().integers(1e9)}"
    fi.write_index_folder(
        staged, index, vectors, ids, manifest(name, model, vectors.shape[1], len(ids), kind, params)
    )
    return fi.publish(staged, index_dir, name)


def test_flat_index_finds_every_vector_itself_first_by_image_id(tmp_path):
    vectors = clustered(300, 16)
    ids = np.arange(1000, 1300, dtype=np.int64)  # ids are Image keys, not positions
    publish(tmp_path, vectors, ids)
    scores, found = IndexService(tmp_path, "idx").search(vectors, k=3)
    assert (found[:, 0] == ids).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    # scores are inner products = cosine similarities, computed independently with numpy
    expected = vectors[5] @ vectors[(found[5] - 1000)].T
    np.testing.assert_allclose(scores[5], expected, atol=1e-5)


def test_flat_search_of_few_and_many_queries_agrees_with_numpy(tmp_path):
    """Few queries take the GEMV route over FAISS's own storage, many take FAISS's scan."""
    vectors = clustered(400, 32)
    ids = np.arange(5000, 5400, dtype=np.int64) * 3
    publish(tmp_path, vectors, ids)
    service = IndexService(tmp_path, "idx")
    assert service.get().flat is not None
    queries = clustered(fi.EXACT_GEMV_MAX_QUERIES + 4, 32, seed=7)
    brute = queries @ vectors.T
    expected_ids = ids[np.argsort(-brute, axis=1)[:, :5]]
    few_scores, few = service.search(queries[:1], k=5)
    many_scores, many = service.search(queries, k=5)
    np.testing.assert_array_equal(few[0], expected_ids[0])
    np.testing.assert_array_equal(many, expected_ids)
    np.testing.assert_allclose(few_scores[0], np.sort(brute[0])[::-1][:5], atol=1e-5)
    np.testing.assert_allclose(many_scores, np.sort(brute, axis=1)[:, ::-1][:, :5], atol=1e-5)


def test_hnsw_and_ivfpq_agree_with_flat_on_most_top1(tmp_path):
    vectors = clustered(2000, 32)
    ids = np.arange(2000, dtype=np.int64)
    queries = clustered(200, 32, seed=1)
    flat, _ = fi.build_faiss_index(vectors, ids, IndexType.FLAT)
    _, exact = flat.search(queries, 1)
    for kind, required in [(IndexType.HNSW, 0.9), (IndexType.IVFPQ, 0.5)]:
        approx_index, params = fi.build_faiss_index(vectors, ids, kind)
        assert params["type"] == kind
        _, approx = approx_index.search(queries, 1)
        assert (approx[:, 0] == exact[:, 0]).mean() >= required, kind


def test_auto_considers_exact_up_to_the_setting_then_hnsw_then_exact_then_ivfpq(settings):
    settings.TINYRAG_HNSW_MIN_VECTORS = 20_000
    assert fi.choose_index_type(20_000, 512) == IndexType.FLAT
    assert fi.choose_index_type(20_001, 512, memory_bytes=64 << 30) == IndexType.HNSW
    assert fi.choose_index_type(20_001, 512, min_vectors=50_000) == IndexType.FLAT
    # 10^7 x 512 floats = 20.5 GB and the graph 2.6 GB more: half of 40 GiB (21.5 GB) holds
    # the vectors but not the graph, half of 48 GiB (25.8 GB) holds both
    assert fi.choose_index_type(10_000_000, 512, memory_bytes=40 << 30) == IndexType.FLAT
    assert fi.choose_index_type(10_000_000, 512, memory_bytes=48 << 30) == IndexType.HNSW
    # 10^8 x 512 floats = 205 GB: more than half of 64 GiB
    assert fi.choose_index_type(100_000_000, 512, memory_bytes=64 << 30) == IndexType.IVFPQ


def test_exclude_ids_and_padding(tmp_path):
    vectors = clustered(5, 8)
    publish(tmp_path, vectors, np.arange(10, 15, dtype=np.int64))
    service = IndexService(tmp_path, "idx")
    scores, found = service.search(vectors[0], k=10, exclude_ids={10})
    assert 10 not in found[0]
    assert sorted(found[0][:4]) == [11, 12, 13, 14]
    assert list(found[0][4:]) == [-1] * 6
    assert np.isneginf(scores[0][4:]).all()


def test_published_folder_holds_row_aligned_vectors_and_manifest(tmp_path):
    vectors, ids = clustered(50, 16), np.arange(7, 57, dtype=np.int64)
    link = publish(tmp_path, vectors, ids)
    assert sorted(p.name for p in link.iterdir()) == [
        "embeddings.npy",
        "ids.npy",
        "index.faiss",
        "manifest.json",
    ]
    np.testing.assert_array_equal(np.load(link / "ids.npy"), ids)
    np.testing.assert_array_equal(np.load(link / "embeddings.npy"), vectors)
    assert fi.read_manifest(tmp_path, "idx").count == 50


def test_a_newer_publish_is_picked_up_and_the_old_build_removed(tmp_path):
    publish(tmp_path, clustered(10, 16), np.arange(10, dtype=np.int64))
    service = IndexService(tmp_path, "idx")
    first_folder = service.get().folder
    assert service.manifest.count == 10
    publish(tmp_path, clustered(20, 16), np.arange(20, dtype=np.int64))
    assert service.manifest.count == 20
    assert not first_folder.exists()


def test_staged_but_unpublished_build_is_invisible(tmp_path):
    publish(tmp_path, clustered(10, 16), np.arange(10, dtype=np.int64))
    vectors = clustered(30, 16)
    index, _ = fi.build_faiss_index(vectors, np.arange(30), IndexType.FLAT)
    fi.write_index_folder(
        fi.builds_dir(tmp_path) / "idx-half", index, vectors, np.arange(30), manifest(count=30)
    )  # a build killed before publish
    assert IndexService(tmp_path, "idx").manifest.count == 10


def test_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(fi.IndexNotFoundError, match="build_index --name nope") as caught:
        IndexService(tmp_path, "nope").get()
    # pages and API answers show it: the folder by its setting, not the server's path
    assert "no index named 'nope' in TINYRAG_INDEX_DIR" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


def test_corrupt_index_file_is_refused(tmp_path):
    link = publish(tmp_path, clustered(10, 16), np.arange(10, dtype=np.int64))
    (link / "index.faiss").write_bytes(b"\x00" * 100)
    with pytest.raises(fi.IndexCorruptError, match="idx/index.faiss cannot be read") as caught:
        IndexService(tmp_path, "idx").get()
    assert str(tmp_path) not in str(caught.value)


def test_manifest_that_disagrees_with_the_index_is_refused(tmp_path):
    link = publish(tmp_path, clustered(10, 16), np.arange(10, dtype=np.int64))
    (link / "manifest.json").write_text(manifest(count=11).to_json())
    with pytest.raises(fi.IndexCorruptError, match="holds 10 vectors of dim 16"):
        IndexService(tmp_path, "idx").get()


def test_model_mismatch_is_refused(tmp_path):
    publish(tmp_path, clustered(10, 16), np.arange(10, dtype=np.int64), model="clip-a")
    service = IndexService(tmp_path, "idx")
    service.check_model("clip-a", 16)
    with pytest.raises(fi.IndexMismatchError, match="built with clip-a"):
        service.check_model("clip-b", 16)
    with pytest.raises(fi.IndexMismatchError, match="dim 16"):
        service.check_model("clip-a", 32)
    with pytest.raises(fi.IndexMismatchError, match="query vectors have dim 8"):
        service.search(np.ones((1, 8), np.float32), k=1)


def test_a_flat_view_keeps_the_index_it_reads_alive():
    import gc
    import weakref

    vectors = clustered(50, 8)
    index, _ = fi.build_faiss_index(vectors, np.arange(50, dtype=np.int64), IndexType.FLAT)
    view, alive = fi.FlatView.of(index), weakref.ref(index)
    del index
    gc.collect()
    assert alive() is not None  # the storage the view reads has not been freed
    np.testing.assert_array_equal(view.vectors.numpy(), vectors)
    del view
    gc.collect()
    assert alive() is None  # and nothing else kept it


def test_an_absurd_k_is_refused_before_anything_is_allocated(tmp_path):
    vectors = clustered(20, 8)
    publish(tmp_path, vectors, np.arange(20, dtype=np.int64))
    service = IndexService(tmp_path, "idx")
    with pytest.raises(ValueError, match=f"k must be between 0 and {fi.SEARCH_K_MAX}; got 10001"):
        service.search(vectors[0], k=fi.SEARCH_K_MAX + 1)
    scores, found = service.search(vectors[0], k=fi.SEARCH_K_MAX)  # the bound itself: padded
    assert found.shape == scores.shape == (1, fi.SEARCH_K_MAX)
    assert (found[0, 20:] == -1).all()
    assert sorted(found[0, :20]) == list(range(20))
