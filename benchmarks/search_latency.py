"""Search latency at TinyImageNet scale and beyond: FAISS alone, the service, the API.

    .venv/bin/python benchmarks/search_latency.py [--vectors 100000] [--queries 200]

Builds, in a temporary folder, a 100,000 x 512 index of unit vectors shaped like embeddings
(200 classes, each spread over a low-dimensional subspace; uniform noise would make HNSW look
worse than it is on real embeddings, and a line on such "isotropic" clusters shows how much)
whose ids are real `Image` rows of a temporary SQLite database, and the full-size CLIP
ViT-B/32 architecture with random weights (compute equals real weights). Then prints the
median and p95 of:

  (a) FAISS search alone: flat (exact) -- FAISS's own scan and the service's route for a
      single query (one GEMV over the same FAISS storage) -- and HNSW, with its recall@10
      against flat at several efSearch;
  (b) a text search through the service (`text_search`: CLIP text tower, FAISS, the database
      reads and the history writes);
  (c) the API end to end (`POST /api/v1/search/text`) on gunicorn (deploy/gunicorn.conf.py)
      started here on 127.0.0.1, with a bounded number of concurrent clients; errors counted.

Targets on a 2-core CPU: (a) flat < 15 ms, HNSW < 1 ms at recall@10 >= 0.95; (b) < 50 ms
median; (c) no errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._server import (  # noqa: E402
    bench_environment,
    embedding_like,
    gunicorn,
    publish_world,
    setup_django,
    text_search,
)

WORDS = [
    "cat",
    "lemon",
    "school bus",
    "teapot",
    "volleyball",
    "goldfish",
    "pizza",
    "umbrella",
    "bridge",
    "mushroom",
    "koala",
    "sports car",
    "candle",
    "pretzel",
    "jellyfish",
]


def isotropic_clusters(n: int, dim: int, *, classes: int = 200, seed: int = 0) -> np.ndarray:
    """The hard case: clusters of full-dimensional noise (no low-dimensional structure)."""
    centres = np.random.default_rng(0).normal(size=(classes, dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    x = centres[rng.integers(0, classes, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def summary(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"median {np.median(ms):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms   (n={len(ms)})"


def timed(search, queries: np.ndarray) -> list[float]:
    times = []
    for q in queries:
        started = time.perf_counter()
        search(q[None, :])
        times.append(time.perf_counter() - started)
    return times


def bench_faiss(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, hard: tuple) -> None:
    import faiss

    from search.index.service import FlatView, IndexType, build_faiss_index

    flat, _ = build_faiss_index(vectors, ids, IndexType.FLAT)
    _, exact = flat.search(queries, 10)
    faiss_times = timed(lambda q: flat.search(q, 10), queries)
    print(f"(a) FAISS flat, index.search:    {summary(faiss_times)}")
    view = FlatView.of(flat)
    view_times = timed(lambda q: view.search(q, 10), queries)
    print(f"    flat, the service's route:  {summary(view_times)}")
    _, via_view = view.search(queries, 10)
    print(f"    (same top-10 as index.search: {np.mean(via_view == exact):.4f} of positions)")

    for label, data, probe in (("embedding-like", vectors, queries), ("isotropic", *hard)):
        if label == "isotropic":
            flat, _ = build_faiss_index(data, ids, IndexType.FLAT)
            _, exact = flat.search(probe, 10)
        started = time.perf_counter()
        hnsw, params = build_faiss_index(data, ids, IndexType.HNSW)
        print(f"    HNSW on {label} vectors: build {time.perf_counter() - started:.1f} s, {params}")
        inner = faiss.downcast_index(hnsw.index)
        for ef in (16, 32, 64, 128):
            inner.hnsw.efSearch = ef
            _, approx = hnsw.search(probe, 10)
            hits = [len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True)]
            recall = np.mean(hits) / 10
            times = timed(lambda q: hnsw.search(q, 10), probe)  # noqa: B023 -- used at once
            default = " (default)" if ef == params["efSearch"] else ""
            print(f"      efSearch={ef:3d}{default:10s} recall@10 {recall:.3f}, {summary(times)}")


def bench_service(queries: int) -> None:
    from django.contrib.auth import get_user_model

    from search.queries.services import text_search

    user = get_user_model().objects.create_user("bench", password="bench-password-123")
    text_search(user=user, text="warm up", top_k=10)  # loads CLIP and the index
    times = []
    for i in range(queries):
        t = time.perf_counter()
        text_search(user=user, text=WORDS[i % len(WORDS)] + f" {i}", top_k=10)
        times.append(time.perf_counter() - t)
    print(f"(b) text_search service (CLIP text + FAISS flat + DB), k=10: {summary(times)}")


def bench_api(env: dict, requests: int, clients: int) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("api", password="api-password-123")
    token = Token.objects.create(user=user).key

    with gunicorn(env, workers=1, threads=clients) as base:

        def post(text: str) -> tuple[float, int]:
            started = time.perf_counter()
            status, _ = text_search(base, token, text)
            return time.perf_counter() - started, status

        post("warm up")  # loads CLIP and the index in the worker
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(post, [WORDS[i % len(WORDS)] for i in range(requests)]))
        wall = time.perf_counter() - started
    errors = sum(1 for _, status in results if status != 201)
    print(
        f"(c) API POST /api/v1/search/text under gunicorn (1 worker, {clients} threads), "
        f"{clients} concurrent clients, {requests} requests: "
        f"{summary([t for t, _ in results])}; {requests / wall:.1f} req/s; errors: {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000, help="Index size (default 100k).")
    parser.add_argument("--queries", type=int, default=200, help="Queries per measurement.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent API clients.")
    parser.add_argument("--requests", type=int, default=200, help="API requests in all.")
    args = parser.parse_args()

    vectors = embedding_like(args.vectors, 512)
    queries = embedding_like(args.queries, 512, seed=1)
    hard = (isotropic_clusters(args.vectors, 512), isotropic_clusters(args.queries, 512, seed=1))
    bench_faiss(vectors, np.arange(args.vectors, dtype=np.int64), queries, hard)
    del hard

    with tempfile.TemporaryDirectory(prefix="tinyrag-bench-") as tmp:
        workdir = Path(tmp)
        from tests.fixtures.models import VIT_B_32, build_clip

        build_clip(workdir / "clip", VIT_B_32)
        env = bench_environment(workdir, workdir / "clip")
        setup_django(env)
        publish_world(vectors, workdir, model_id=str(workdir / "clip"))
        bench_service(args.queries)
        bench_api(env, args.requests, args.clients)
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
