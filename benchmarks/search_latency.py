"""Search latency at TinyImageNet scale and beyond: FAISS alone, the service, the API.

    .venv/bin/python benchmarks/search_latency.py [--vectors 100000] [--queries 200]

Builds, in a temporary folder, a 100,000 x 512 index of clustered unit vectors (uniform noise
would make HNSW look worse than it is on real embeddings) whose ids are real `Image` rows of a
temporary SQLite database, and the full-size CLIP ViT-B/32 architecture with random weights
(compute equals real weights). Then prints median and p95 of:

  (a) FAISS search alone: flat (exact) and HNSW, with HNSW's recall@10 against flat;
  (b) a text search through the service (`text_search`: CLIP text tower, FAISS, the database
      reads and the history writes);
  (c) the API end to end (`POST /api/v1/search/text`) on a server started here on 127.0.0.1,
      with a bounded number of concurrent clients; errors are counted.

Targets on a 2-core CPU: (a) flat < 15 ms, HNSW < 1 ms at recall@10 >= 0.95; (b) < 50 ms
median; (c) no errors.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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


def clustered_unit_vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def summary(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"median {np.median(ms):7.2f} ms   p95 {np.percentile(ms, 95):7.2f} ms   (n={len(ms)})"


def bench_faiss(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> None:
    import faiss

    from search.index import IndexType, build_faiss_index

    flat, _ = build_faiss_index(vectors, ids, IndexType.FLAT)
    started = time.perf_counter()
    hnsw, params = build_faiss_index(vectors, ids, IndexType.HNSW)
    print(f"HNSW build: {time.perf_counter() - started:.1f} s ({params})")
    _, exact = flat.search(queries, 10)
    for name, index in (("flat", flat), ("hnsw", hnsw)):
        times = []
        for q in queries:
            t = time.perf_counter()
            index.search(q[None, :], 10)
            times.append(time.perf_counter() - t)
        print(f"(a) FAISS {name:5s} one query, k=10: {summary(times)}")
    inner = faiss.downcast_index(hnsw.index)
    for ef in (32, 64, 128):
        inner.hnsw.efSearch = ef
        _, approx = hnsw.search(queries, 10)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
        times = []
        for q in queries[:100]:
            t = time.perf_counter()
            hnsw.search(q[None, :], 10)
            times.append(time.perf_counter() - t)
        print(f"    hnsw efSearch={ef:3d}: recall@10 {recall:.3f}, {summary(times)}")


def setup_django(workdir: Path) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "tinyrag_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "TINYRAG_HTTPS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TINYRAG_DATA_DIR": str(workdir / "data"),
        "TINYRAG_INDEX_DIR": str(workdir / "vector_db"),
        "TINYRAG_INDEX_NAME": "bench",
        "TINYRAG_CLIP_MODEL": str(workdir / "clip"),
        "TINYRAG_API_RATE": "100000/minute",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL", None)
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def populate(n: int, vectors: np.ndarray, workdir: Path):
    from search import index as fi
    from search.models import Dataset, Image, ImageClass

    dataset = Dataset.objects.create(name="bench", root=str(workdir), source="imagefolder")
    classes = ImageClass.objects.bulk_create(
        ImageClass(dataset=dataset, wnid=f"c{c:03d}", name=f"class {c}", names=[f"class {c}"])
        for c in range(200)
    )
    Image.objects.bulk_create(
        (
            Image(
                dataset=dataset,
                split="train",
                image_class=classes[i % 200],
                path=f"train/{i}.jpg",
                width=64,
                height=64,
                mode="RGB",
            )
            for i in range(n)
        ),
        batch_size=5000,
    )
    ids = np.array(Image.objects.order_by("id").values_list("id", flat=True), dtype=np.int64)
    index, params = fi.build_faiss_index(vectors, ids, fi.IndexType.FLAT)
    kind = params.pop("type")
    manifest = fi.IndexManifest(
        name="bench",
        model_id=str(workdir / "clip"),
        dim=512,
        index_type=kind,
        index_params=params,
        count=n,
        dataset="bench",
        splits=["train"],
        created_at=fi.now_iso(),
    )
    staged = fi.builds_dir(workdir / "vector_db") / "bench-1"
    fi.write_index_folder(staged, index, vectors, ids, manifest)
    fi.publish(staged, workdir / "vector_db", "bench")


def bench_service(queries: int) -> None:
    from django.contrib.auth import get_user_model

    from search.services.search import text_search

    user = get_user_model().objects.create_user("bench", password="bench-password-123")
    text_search(user=user, text="warm up", top_k=10)  # loads CLIP and the index
    times = []
    for i in range(queries):
        t = time.perf_counter()
        text_search(user=user, text=WORDS[i % len(WORDS)] + f" {i}", top_k=10)
        times.append(time.perf_counter() - t)
    print(f"(b) text_search service (CLIP text + FAISS flat + DB), k=10: {summary(times)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_api(env: dict, requests: int, clients: int) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("api", password="api-password-123")
    token = Token.objects.create(user=user).key
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
            "--skip-checks",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/api/v1/search/text"

    def post(text: str) -> tuple[float, int]:
        body = json.dumps({"text": text, "top_k": 10}).encode()
        req = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        )
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        return time.perf_counter() - t, status

    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if post("warm up")[1] == 201:
                break
            time.sleep(0.5)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(post, [WORDS[i % len(WORDS)] for i in range(requests)]))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
    errors = sum(1 for _, status in results if status != 201)
    print(
        f"(c) API POST /api/v1/search/text, {clients} concurrent clients, {requests} requests: "
        f"{summary([t for t, _ in results])}; {requests / wall:.1f} req/s; errors: {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000, help="Index size (default 100k).")
    parser.add_argument("--queries", type=int, default=200, help="Queries per measurement.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent API clients.")
    parser.add_argument("--requests", type=int, default=200, help="API requests in all.")
    args = parser.parse_args()

    vectors = clustered_unit_vectors(args.vectors, 512, clusters=200, seed=0)
    queries = clustered_unit_vectors(args.queries, 512, clusters=200, seed=0)[::-1].copy()
    queries = queries + 0.1 * np.random.default_rng(1).normal(size=queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    bench_faiss(vectors, np.arange(args.vectors, dtype=np.int64), queries)

    with tempfile.TemporaryDirectory(prefix="tinyrag-bench-") as tmp:
        workdir = Path(tmp)
        from tests.fixtures.models import VIT_B_32, build_clip

        build_clip(workdir / "clip", VIT_B_32)
        env = setup_django(workdir)
        populate(args.vectors, vectors, workdir)
        bench_service(args.queries)
        bench_api(env, args.requests, args.clients)
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
