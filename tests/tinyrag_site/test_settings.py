"""Settings: production refuses to start without SECRET_KEY; check --deploy is clean."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys


def manage(*args, **env):
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DJANGO_SETTINGS_MODULE",
            "SECRET_KEY",
            "DEBUG",
            "TINYRAG_HTTPS",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
    )


def test_check_deploy_with_production_settings_has_no_warnings(tmp_path):
    proc = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="tinyrag.example.com",
        TINYRAG_DATA_DIR=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "System check identified no issues (0 silenced)." in proc.stdout


def test_production_without_secret_key_refuses_to_start(tmp_path):
    proc = manage("check", DEBUG="0", TINYRAG_DATA_DIR=str(tmp_path))
    assert proc.returncode != 0
    assert "SECRET_KEY is not set" in proc.stderr


def test_debug_without_secret_key_uses_a_development_key(tmp_path):
    proc = manage("check", DEBUG="1", TINYRAG_DATA_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_bad_boolean_is_a_clear_error(tmp_path):
    proc = manage("check", DEBUG="maybe", TINYRAG_DATA_DIR=str(tmp_path))
    assert "DEBUG='maybe' is not a boolean" in proc.stderr
