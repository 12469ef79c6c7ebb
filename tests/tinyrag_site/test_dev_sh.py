"""deploy/dev.sh's options, checked before it installs or starts anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

DEV_SH = Path(__file__).resolve().parents[2] / "deploy" / "dev.sh"


def dev_sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DEV_SH), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_a_relative_archive_path_is_taken_from_where_dev_sh_was_called(tmp_path):
    # dev.sh changes to the project folder first; the path the user typed is from their folder
    done = dev_sh("--archive", "tiny-imagenet-200.zip", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"--archive {tmp_path}/tiny-imagenet-200.zip: no such file"


def test_an_unknown_option_is_refused_with_what_dev_sh_takes(tmp_path):
    done = dev_sh("--archve", "x.zip", cwd=tmp_path)
    assert done.returncode == 2
    assert "Unknown option: --archve (dev.sh takes --archive PATH)" in done.stderr
