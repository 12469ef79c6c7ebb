"""download_dataset: full download, resume, interrupted and failed downloads, local archives."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from tests.fixtures.http import unused_port

ARCHIVE = "tiny-imagenet-200.zip"


@pytest.fixture
def payload(tinyimagenet_zip, file_server):
    file_server.content = tinyimagenet_zip.read_bytes()
    return file_server.content


def run(*args):
    call_command("download_dataset", *args, verbosity=0)


def test_download_writes_the_exact_bytes_and_no_part_file(payload, file_server, tmp_path):
    run("--url", file_server.url, "--dest", str(tmp_path))
    assert (tmp_path / ARCHIVE).read_bytes() == payload
    assert not (tmp_path / f"{ARCHIVE}.part").exists()


def test_partial_download_resumes_with_a_range_request(payload, file_server, tmp_path):
    offset = len(payload) // 3
    (tmp_path / f"{ARCHIVE}.part").write_bytes(payload[:offset])

    run("--url", file_server.url, "--dest", str(tmp_path))

    assert file_server.requests[-1]["Range"] == f"bytes={offset}-"
    assert (tmp_path / ARCHIVE).read_bytes() == payload


def test_server_that_ignores_range_restarts_from_zero(payload, file_server, tmp_path):
    file_server.honour_range = False
    (tmp_path / f"{ARCHIVE}.part").write_bytes(b"garbage that must not survive")
    run("--url", file_server.url, "--dest", str(tmp_path))
    assert (tmp_path / ARCHIVE).read_bytes() == payload


def test_interrupted_download_keeps_the_part_and_a_rerun_completes(payload, file_server, tmp_path):
    file_server.cut_after = 5000
    with pytest.raises(CommandError, match="run the same command again to resume"):
        run("--url", file_server.url, "--dest", str(tmp_path))
    assert not (tmp_path / ARCHIVE).exists()
    assert (tmp_path / f"{ARCHIVE}.part").read_bytes() == payload[:5000]

    file_server.cut_after = None
    run("--url", file_server.url, "--dest", str(tmp_path))
    assert file_server.requests[-1]["Range"] == "bytes=5000-"
    assert (tmp_path / ARCHIVE).read_bytes() == payload


def test_a_complete_part_file_is_finished_without_refetching(payload, file_server, tmp_path):
    (tmp_path / f"{ARCHIVE}.part").write_bytes(payload)
    run("--url", file_server.url, "--dest", str(tmp_path))  # server answers 416
    assert (tmp_path / ARCHIVE).read_bytes() == payload


def test_sha256_is_verified(payload, file_server, tmp_path):
    good = hashlib.sha256(payload).hexdigest()
    run("--url", file_server.url, "--dest", str(tmp_path), "--sha256", good)
    assert (tmp_path / ARCHIVE).exists()


def test_sha256_mismatch_leaves_nothing_behind(payload, file_server, tmp_path):
    with pytest.raises(CommandError, match="sha256 is"):
        run("--url", file_server.url, "--dest", str(tmp_path), "--sha256", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_one_clear_line(payload, file_server, tmp_path):
    file_server.status = 503
    with pytest.raises(CommandError, match="HTTP 503"):
        run("--url", file_server.url, "--dest", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_already_downloaded_archive_is_not_fetched_again(payload, file_server, tmp_path):
    (tmp_path / ARCHIVE).write_bytes(payload)
    run("--url", file_server.url, "--dest", str(tmp_path))
    assert file_server.requests == []


def test_unreachable_server_fails_fast_and_names_the_archive_option(tmp_path):
    port = unused_port()
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "download_dataset",
            "--url",
            f"http://127.0.0.1:{port}/{ARCHIVE}",
            "--dest",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "could not reach" in proc.stderr
    assert "--archive" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_local_archive_is_verified_and_copied(tinyimagenet_zip, tmp_path):
    dest = tmp_path / "data"
    run("--archive", str(tinyimagenet_zip), "--dest", str(dest))
    assert (dest / ARCHIVE).read_bytes() == tinyimagenet_zip.read_bytes()
    assert not (dest / f"{ARCHIVE}.part").exists()


def test_broken_local_archive_is_refused(tmp_path):
    broken = tmp_path / ARCHIVE
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(CommandError, match="not a zip archive"):
        run("--archive", str(broken), "--dest", str(tmp_path / "data"))
    assert not (tmp_path / "data" / ARCHIVE).exists()


def test_corrupt_member_in_local_archive_is_refused(tinyimagenet_zip, tmp_path):
    data = bytearray(tinyimagenet_zip.read_bytes())
    where = data.find(b"JFIF")  # inside the first JPEG's compressed bytes
    data[where + 200 : where + 240] = b"\xff" * 40
    corrupt = tmp_path / ARCHIVE
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="corrupt|not a zip"):
        run("--archive", str(corrupt), "--dest", str(tmp_path / "data"))
    assert not (tmp_path / "data" / ARCHIVE).exists()
