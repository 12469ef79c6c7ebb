"""Shared by the benchmarks that need a running site: settings, a temporary world, gunicorn.

`bench_environment` points every TinyRAG setting at a temporary folder (SQLite, data, index,
media), `setup_django` applies it to this process and migrates, `publish_world` fills the
database and publishes an index over given vectors (`embedding_like` makes realistic ones), and
`gunicorn` serves the site under deploy/gunicorn.conf.py -- the production server
configuration -- on a free 127.0.0.1 port until the block ends, and `postgres_cluster` starts
a throwaway PostgreSQL server for a benchmark to run on (DATABASE_URL) and removes it after.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bench_environment(workdir: Path, clip_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tinyrag_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "TINYRAG_HTTPS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "TINYRAG_DATA_DIR": str(workdir / "data"),
        "MEDIA_ROOT": str(workdir / "media"),
        "TINYRAG_STATIC_MANIFEST": "0",
        "TINYRAG_INDEX_DIR": str(workdir / "vector_db"),
        "TINYRAG_INDEX_NAME": "bench",
        "TINYRAG_CLIP_MODEL": str(clip_dir),
        # every query through CLIP's own text tower: the benchmarks measure CLIP ViT-B/32, and
        # the multilingual encoder is not built here
        "TINYRAG_TEXT_ROUTE": "clip",
        "TINYRAG_VLM_BACKEND": "none",
        "TINYRAG_API_RATE": "1000000/minute",
        "TINYRAG_SEARCH_RATE": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def embedding_like(n: int, dim: int, *, classes: int = 200, latent: int = 32, seed: int = 0):
    """Unit vectors shaped like image embeddings: `classes` directions, each spread over a
    `latent`-dimensional subspace of its own, plus a little isotropic noise. Real embeddings
    have a low intrinsic dimension (tens, not 512); that is what lets HNSW find neighbours.
    Vectors from the same `seed` share the class geometry; pass another seed for queries."""
    geometry = np.random.default_rng(0)
    centres = geometry.normal(size=(classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = geometry.normal(size=(classes, latent, dim)).astype(np.float32) / np.sqrt(dim)
    rng = np.random.default_rng(seed + 1)
    label = rng.integers(0, classes, n)
    x = centres[label].copy()
    for start in range(0, n, 10_000):  # in blocks: the einsum's temporary stays small
        part = slice(start, start + 10_000)
        z = 0.5 * rng.normal(size=(len(label[part]), latent)).astype(np.float32)
        x[part] += np.einsum("nl,nld->nd", z, bases[label[part]])
    x += 0.02 / np.sqrt(dim) * rng.normal(size=x.shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def publish_world(
    vectors: np.ndarray, workdir: Path, *, model_id: str, index_type: str = "auto"
) -> None:
    """One `Image` row per vector (200 classes) and a published index named "bench" over
    `vectors`, keyed by those rows: of `index_type`, by default `auto` as build_index chooses
    it (HNSW at 100k embedding-like vectors, where its measured recall@10 is high enough).
    Needs `setup_django` first."""
    from search.catalog.models import Dataset, Image, ImageClass
    from search.index import service as fi

    n = len(vectors)
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
    index, params = fi.build_faiss_index(vectors, ids, fi.IndexType(index_type))
    manifest = fi.IndexManifest(
        name="bench",
        model_id=model_id,
        dim=vectors.shape[1],
        **fi.manifest_fields(params),
        count=n,
        dataset="bench",
        splits=["train"],
        created_at=fi.now_iso(),
    )
    staged = fi.builds_dir(workdir / "vector_db") / "bench-1"
    fi.write_index_folder(staged, index, vectors, ids, manifest)
    fi.publish(staged, workdir / "vector_db", "bench")


def text_search(base: str, token: str, text: str, *, top_k: int = 10, timeout: float = 60):
    """One `POST /api/v1/search/text` with an API token: (HTTP status, the API error code or
    ""); status 0 and the error when no HTTP answer came (refused, reset, timed out)."""
    request = urllib.request.Request(
        base + "/api/v1/search/text",
        data=json.dumps({"text": text, "top_k": top_k}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, ""
    except urllib.error.HTTPError as exc:
        try:
            code = json.loads(exc.read())["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "(not the API error format)"
        return exc.code, code
    except OSError as exc:
        return 0, str(exc)


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 1, threads: int = 4) -> Iterator[str]:
    """The site under gunicorn; yields its base URL once it answers. Its log goes to
    gunicorn.log in TINYRAG_DATA_DIR."""
    from tests.fixtures.site import gunicorn as run_gunicorn

    log = Path(env["TINYRAG_DATA_DIR"]) / "gunicorn.log"
    with run_gunicorn(
        env, workers=workers, threads=threads, log=log, args=("--access-logfile", "/dev/null")
    ) as base:
        yield base


class PostgresCluster:
    """A throwaway PostgreSQL cluster in `folder`, as .ci/run starts one: Debian's server
    binaries (the newest /usr/lib/postgresql/*/bin, or $PGBIN), run as the postgres user when
    we are root (initdb refuses root), durability off (fsync, synchronous commit, full-page
    writes: nothing here must survive a crash), 127.0.0.1 on a free port, and a role and a
    database "tinyrag" of its own. `postgres_cluster()` makes one and always removes it."""

    def __init__(self, folder: Path):
        self.bin = postgres_bin()
        self.folder = folder
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(folder, "postgres")

    @property
    def url(self) -> str:
        """The DATABASE_URL of its database, for the role that owns it."""
        return f"postgres://tinyrag:{self.password}@127.0.0.1:{self.port}/tinyrag"

    def init(self) -> None:
        """initdb, start, then the role and the database (over the cluster's own socket)."""
        import psycopg

        self._run(
            "initdb", "-D", "data", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        self.start()
        with psycopg.connect(
            host=str(self.folder), port=self.port, user="postgres", dbname="postgres",
            autocommit=True,
        ) as db:  # fmt: skip
            # the password is hex: nothing in it to quote
            db.execute(f"CREATE ROLE tinyrag LOGIN CREATEDB PASSWORD '{self.password}'")
            db.execute("CREATE DATABASE tinyrag OWNER tinyrag")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", "data", "-l", "server.log", "-w", "-t", "30", "-o", options, "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", "data", "-m", "fast", "-w", "stop")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_postgres, str(self.bin / tool), *args],
            cwd=self.folder,  # the postgres user may not enter ours
            capture_output=True,
            text=True,
            # its own session: a Ctrl-C meant for the benchmark does not reach the server, which
            # then stops when the benchmark stops it
            start_new_session=True,
        )
        if done.returncode:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(
                f"PostgreSQL's {tool} failed (exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}{tail}"
            )


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server binaries: $PGBIN, else the newest Debian one."""
    if os.environ.get("PGBIN"):
        candidates = [Path(os.environ["PGBIN"]) / "initdb"]
    else:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
        )
    found = [path for path in candidates if os.access(path, os.X_OK)]
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, or "
            "$PGBIN/initdb): apt-get install postgresql, or set PGBIN"
        )
    return found[-1].parent


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started PostgresCluster in a temporary folder, stopped and removed when the block
    ends, however it ends (an error, Ctrl-C, a SIGTERM that the caller turned into SystemExit).
    Connections still open to it are cut (a fast shutdown)."""
    folder = Path(tempfile.mkdtemp(prefix="tinyrag-pg-"))
    cluster = None
    try:
        cluster = PostgresCluster(folder)
        cluster.init()
        yield cluster
    finally:
        if cluster is not None and (folder / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):  # a server already gone is stopped too
                cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
