"""Search latency at TinyImageNet scale and beyond: FAISS alone, the service, the API; and
cost curves of exact search and HNSW against collection size.

    .venv/bin/python benchmarks/search_latency.py [--vectors 100000] [--queries 200]
    .venv/bin/python benchmarks/search_latency.py --sizes 10000,100000,1000000

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

Targets on a 2-core CPU: (a) flat < 15 ms, HNSW < 1 ms at recall@10 >= 0.95; (b) <= 15 ms
median; (c) no errors.

With --sizes, only the cost curves: for each collection size (embedding-like vectors as above),
one query at a time, the median and p95 latency of exact search (the service's route) and of
HNSW at several efSearch, HNSW's recall@10 against exact search on the same queries, its build
time (which includes build_index's recall check on held-out vectors, also printed); then memory
per vector (the index as loaded, the published embeddings.npy + ids.npy, and an `Image` row of
the SQLite database with its indexes). Printed, and plotted to --plot (a PNG).
"""

from __future__ import annotations

import argparse
import functools
import json
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
        print(
            f"    HNSW on {label} vectors: build {time.perf_counter() - started:.1f} s "
            f"(with the recall check: recall@10 {params.pop('recall_at_10')} on "
            f"{params.pop('recall_queries')} held-out vectors), {params}"
        )
        inner = faiss.downcast_index(hnsw.index)
        for ef in (16, 32, 64, 128):
            inner.hnsw.efSearch = ef
            _, approx = hnsw.search(probe, 10)
            hits = [len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True)]
            recall = np.mean(hits) / 10
            times = timed(lambda q: hnsw.search(q, 10), probe)  # noqa: B023 -- used at once
            default = " (default)" if ef == params["efSearch"] else ""
            print(f"      efSearch={ef:3d}{default:10s} recall@10 {recall:.3f}, {summary(times)}")


# --- cost curves ---------------------------------------------------------------------------

EF_SEARCHES = (32, 64, 128, 256, 512, 1024)  # build_index's default is 64; auto tries up to 1024
PLOTTED_EF_SEARCHES = (64, 256, 1024)
MIN_RECALL = 0.99  # TINYRAG_HNSW_MIN_RECALL's default
MIN_VECTORS = 20_000  # TINYRAG_HNSW_MIN_VECTORS's default: up to this, auto is exact unmeasured
EXACT_READ_BUDGET = 10_000_000  # vectors read by the timed exact queries of one size: ~40 s


# A fresh interpreter reads the index, so that memory freed earlier in this process cannot be
# reused by the load and hide its size.
RESIDENT_AFTER_LOAD = """
import os, sys, faiss
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
index = faiss.read_index(sys.argv[1])
print(resident() - before)
"""


def loaded_bytes(index, folder: Path) -> tuple[int, int]:
    """(bytes on disk, bytes resident once loaded) of `index`, written and read back as the
    service reads a published index.faiss (the IDMap's reverse map is rebuilt on load)."""
    import subprocess

    import faiss

    path = folder / "index.faiss"
    faiss.write_index(index, str(path))
    on_disk = path.stat().st_size
    out = subprocess.run(
        [sys.executable, "-c", RESIDENT_AFTER_LOAD, str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path.unlink()
    return on_disk, int(out.stdout.strip())


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def cost_at(n: int, queries: np.ndarray, scratch: Path) -> dict:
    """Exact and HNSW at one collection size."""
    import faiss

    from search.index.service import (
        FlatView,
        IndexType,
        auto_ef_searches,
        build_faiss_index,
        build_hnsw,
        default_params,
    )

    started = time.perf_counter()
    vectors = embedding_like(n, 512)
    ids = np.arange(n, dtype=np.int64)
    row: dict = {"size": n, "generate_s": time.perf_counter() - started}

    flat, _ = build_faiss_index(vectors, ids, IndexType.FLAT)
    _, truth = flat.search(queries, 10)  # the exact answers, all queries in one batch
    view = FlatView.of(flat)
    probe = queries[: max(20, min(len(queries), EXACT_READ_BUDGET // n))]
    times = timed(functools.partial(view.search, k=10), probe)
    row["exact"] = {**percentiles(times), "n": len(probe)}
    row["flat_disk"], row["flat_ram"] = loaded_bytes(flat, scratch)
    del view, flat  # its copy of the vectors, before the graph makes another

    started = time.perf_counter()  # the graph as auto builds it, with its recall check
    hnsw, params = build_hnsw(
        vectors, ids, default_params(IndexType.HNSW, n, 512),
        ef_searches=auto_ef_searches(n, 32), min_recall=MIN_RECALL,
    )  # fmt: skip
    row["hnsw_build_s"] = time.perf_counter() - started
    row["build_recall"] = {
        "recall_at_10": params["recall_at_10"],
        "n": params["recall_queries"],
        "efSearch": params["efSearch"],
        "auto": "hnsw" if n > MIN_VECTORS and params["recall_at_10"] >= MIN_RECALL else "flat",
    }
    inner = faiss.downcast_index(hnsw.index)
    row["hnsw"] = {}
    for ef in EF_SEARCHES:
        inner.hnsw.efSearch = ef
        _, found = hnsw.search(queries, 10)
        times = timed(lambda q: hnsw.search(q, 10), queries)  # noqa: B023 -- used at once
        row["hnsw"][ef] = {**percentiles(times), "recall_at_10": recall_at_10(found, truth)}
    row["hnsw_disk"], row["hnsw_ram"] = loaded_bytes(hnsw, scratch)
    return row


def sqlite_row_bytes(rows: int = 10_000) -> float:
    """Bytes an `Image` row adds to the SQLite database file, with its indexes: the file's
    growth over `rows` TinyImageNet-like rows, after a WAL checkpoint."""
    from django.db import connection

    from search.catalog.models import Dataset, Image, ImageClass

    db_file = Path(connection.settings_dict["NAME"])

    def size() -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db_file.stat().st_size

    dataset = Dataset.objects.create(
        name="rows", root="/data/tiny-imagenet-200", source="tinyimagenet"
    )
    classes = ImageClass.objects.bulk_create(
        ImageClass(dataset=dataset, wnid=f"n{c:08d}", name=f"class {c}", names=[f"class {c}"])
        for c in range(200)
    )
    before = size()
    Image.objects.bulk_create(
        (
            Image(
                dataset=dataset,
                split="train",
                image_class=classes[i % 200],
                path=f"train/n{i % 200:08d}/images/n{i % 200:08d}_{i // 200}.JPEG",
                width=64,
                height=64,
                mode="RGB",
            )  # fmt: skip
            for i in range(rows)
        ),
        batch_size=5000,
    )
    return (size() - before) / rows


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    sizes = [r["size"] for r in rows]
    figure = Figure(figsize=(12, 4.2), layout="constrained")
    latency, recall, build = figure.subplots(1, 3)
    colour = {None: "C0", **{ef: f"C{n + 1}" for n, ef in enumerate(EF_SEARCHES)}}  # both panels
    lines = [("exact", None)] + [(f"HNSW efSearch {ef}", ef) for ef in PLOTTED_EF_SEARCHES]
    for label, key in lines:
        stats = [r["exact"] if key is None else r["hnsw"][key] for r in rows]
        latency.plot(sizes, [s["median_ms"] for s in stats], "o-", color=colour[key],
                     label=f"{label}, median")  # fmt: skip
        latency.plot(sizes, [s["p95_ms"] for s in stats], "o--", color=colour[key], alpha=0.5,
                     label=f"{label}, p95")  # fmt: skip
    latency.set(xscale="log", yscale="log", xlabel="vectors (512-d)", ylabel="ms per query",
                title="Search latency, one query at a time")  # fmt: skip
    latency.legend(fontsize="small")
    for ef in EF_SEARCHES:
        recall.plot(sizes, [r["hnsw"][ef]["recall_at_10"] for r in rows], "o-",
                    color=colour[ef], label=f"HNSW efSearch {ef}")  # fmt: skip
    recall.plot(sizes, [r["build_recall"]["recall_at_10"] for r in rows], "k^:",
                label="build-time check (held out, auto's efSearch)")  # fmt: skip
    recall.axhline(MIN_RECALL, color="grey", linewidth=0.8, linestyle="--")
    recall.set(xscale="log", xlabel="vectors (512-d)", ylabel="recall@10 against exact",
               title="HNSW recall (exact = 1)")  # fmt: skip
    recall.legend(fontsize="small")
    build.plot(sizes, [r["hnsw_build_s"] for r in rows], "o-", color="k")
    build.set(xscale="log", yscale="log", xlabel="vectors (512-d)", ylabel="seconds",
              title="HNSW build (M=32, efConstruction 80)")  # fmt: skip
    figure.suptitle(f"Exact search vs HNSW on embedding-like vectors, {os.cpu_count()} CPUs")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def cost_curves(sizes: list[int], queries: int, plot: Path, json_path: Path | None) -> None:
    import faiss

    print(f"Cost curves: {queries} queries per size, one at a time, faiss {faiss.__version__}")
    probe = embedding_like(queries, 512, seed=1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinyrag-curves-") as tmp:
        for n in sizes:
            row = cost_at(n, probe, Path(tmp))
            rows.append(row)
            e = row["exact"]
            print(f"\n{n:>9,} vectors (generated in {row['generate_s']:.1f} s)")
            print(f"  exact (service route)   median {e['median_ms']:8.2f} ms  "
                  f"p95 {e['p95_ms']:8.2f} ms  (n={e['n']})")  # fmt: skip
            b = row["build_recall"]
            print(f"  HNSW build {row['hnsw_build_s']:.1f} s with the recall check: recall@10 "
                  f"{b['recall_at_10']} on {b['n']} held-out vectors at efSearch {b['efSearch']}"
                  f" -> auto takes {b['auto']}")  # fmt: skip
            for ef, h in row["hnsw"].items():
                print(f"  HNSW efSearch {ef:<4}      median {h['median_ms']:8.2f} ms  "
                      f"p95 {h['p95_ms']:8.2f} ms  recall@10 {h['recall_at_10']:.4f}")  # fmt: skip

        workdir = Path(tmp)
        setup_django(bench_environment(workdir, workdir / "no-clip"))
        row_bytes = sqlite_row_bytes()
    embeddings = 512 * 4 + 8  # embeddings.npy row + ids.npy entry
    print("\nMemory per vector (512-d float32), bytes:")
    print(f"  {'vectors':>10} {'flat RAM':>9} {'flat disk':>9} {'HNSW RAM':>9} {'HNSW disk':>9}"
          f" {'npy files':>9} {'DB row':>7}")  # fmt: skip
    for r in rows:
        n = r["size"]
        print(f"  {n:>10,} {r['flat_ram'] / n:9.0f} {r['flat_disk'] / n:9.0f} "
              f"{r['hnsw_ram'] / n:9.0f} {r['hnsw_disk'] / n:9.0f} {embeddings:9d} "
              f"{row_bytes:7.0f}")  # fmt: skip
    print("  (RAM: resident growth when the service loads index.faiss; the npy files are on disk")
    print("   and read only by rebuilds and exact evaluation; DB row: SQLite file growth per Image")
    print("   row with its indexes)")
    plot_curves(rows, plot)
    print(f"\nWrote {plot}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"rows": rows, "db_row_bytes": row_bytes}, indent=2))
        print(f"Wrote {json_path}")
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")


def bench_service(queries: int) -> None:
    from django.contrib.auth import get_user_model

    from search.index.service import get_index_service
    from search.queries.services import text_search

    user = get_user_model().objects.create_user("bench", password="bench-password-123")
    text_search(user=user, text="warm up", top_k=10)  # loads CLIP and the index
    kind = get_index_service().manifest.index_type  # as published: auto chooses by recall
    times = []
    for i in range(queries):
        t = time.perf_counter()
        text_search(user=user, text=WORDS[i % len(WORDS)] + f" {i}", top_k=10)
        times.append(time.perf_counter() - t)
    print(f"(b) text_search service (CLIP text + FAISS {kind} + DB), k=10: {summary(times)}")


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
    parser.add_argument(
        "--sizes",
        help="Comma-separated collection sizes, e.g. 10000,100000,1000000: only the cost curves "
        "(exact and HNSW latency, recall, build time, memory per vector), printed and plotted.",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=ROOT / "artifacts" / "search-latency.png",
        help="Where --sizes writes its picture (default: artifacts/search-latency.png).",
    )
    parser.add_argument("--json", type=Path, help="--sizes: also write the figures here.")
    args = parser.parse_args()
    if args.sizes:
        try:
            sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        except ValueError:
            parser.error(f"--sizes takes comma-separated integers; got {args.sizes!r}")
        if not sizes or sizes[0] < 1000:
            parser.error(
                "--sizes: each size must be at least 1000 (the recall check holds out 1000)"
            )
        cost_curves(sizes, args.queries, args.plot, args.json)
        return

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
