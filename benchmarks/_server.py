"""Shared by the benchmarks that need a running site: settings, a temporary world, gunicorn.

`bench_environment` points every TinyRAG setting at a temporary folder (SQLite, data, index,
media), `setup_django` applies it to this process and migrates, and `gunicorn` serves the site
under deploy/gunicorn.conf.py -- the production server configuration -- on a free 127.0.0.1
port until the block ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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
        "TINYRAG_VLM_BACKEND": "none",
        "TINYRAG_API_RATE": "1000000/minute",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 1, threads: int = 4) -> Iterator[str]:
    """The site under gunicorn; yields its base URL once /healthz answers."""
    port = free_port()
    server_env = {
        **os.environ,
        **env,
        "TINYRAG_BIND": f"127.0.0.1:{port}",
        "TINYRAG_WEB_WORKERS": str(workers),
        "TINYRAG_WEB_THREADS": str(threads),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tinyrag_site.wsgi",
            "-c",
            "deploy/gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{server.stderr.read()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not answer /healthz within 60 s") from None
                time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
