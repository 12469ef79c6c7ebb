"""Settings: production refuses to start without SECRET_KEY; check --deploy is clean; a .env
file fills in what the environment does not set."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args, cwd=ROOT, **env):
    """manage.py in a fresh process, with no .env (a developer's own must not change the
    outcome) unless the test names one in TINYRAG_ENV_FILE."""
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
            "TINYRAG_ENV_FILE",
        }
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        capture_output=True,
        text=True,
        env={"TINYRAG_ENV_FILE": "", **base, **env},
        cwd=cwd,
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


# --- .env -----------------------------------------------------------------------------------

PRINT = (
    "from django.conf import settings; "
    "print(settings.DEBUG, settings.TINYRAG_INDEX_NAME, settings.TINYRAG_TOP_K_MAX)"
)


def test_a_dotenv_file_gives_development_settings_without_exporting_anything(tmp_path):
    """The SECRET_KEY refusal above, lifted by DEBUG=1 written in the file alone."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# development\nDEBUG=1\nTINYRAG_INDEX_NAME='from dotenv'\n", encoding="utf-8"
    )
    proc = manage(
        "shell",
        "--no-imports",
        "-c",
        PRINT,
        TINYRAG_ENV_FILE=str(env_file),
        TINYRAG_DATA_DIR=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "True from dotenv 100"


def test_the_real_environment_wins_over_the_dotenv_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=1\nTINYRAG_TOP_K_MAX=7\n", encoding="utf-8")
    proc = manage(
        "check", DEBUG="0", TINYRAG_ENV_FILE=str(env_file), TINYRAG_DATA_DIR=str(tmp_path)
    )
    assert proc.returncode != 0
    assert "SECRET_KEY is not set" in proc.stderr
    proc = manage(
        "shell",
        "--no-imports",
        "-c",
        PRINT,
        TINYRAG_TOP_K_MAX="12",
        TINYRAG_ENV_FILE=str(env_file),
        TINYRAG_DATA_DIR=str(tmp_path),
    )
    assert proc.stdout.split("\n")[0] == "True tiny-imagenet-200 12"


def test_a_relative_env_file_is_found_from_the_project_folder_not_the_shell(tmp_path):
    """Run from elsewhere (cwd = tmp_path/elsewhere), a relative TINYRAG_ENV_FILE (like the
    default, .env) still names a file beside manage.py."""
    import os

    env_file = tmp_path / "conf" / "site.env"
    env_file.parent.mkdir()
    env_file.write_text("DEBUG=1\nTINYRAG_INDEX_NAME=relative\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "conf").mkdir()
    (elsewhere / "conf" / "site.env").write_text("TINYRAG_INDEX_NAME=wrong\n", encoding="utf-8")
    relative = os.path.relpath(env_file, ROOT)
    proc = manage(
        "shell",
        "--no-imports",
        "-c",
        PRINT,
        cwd=elsewhere,
        TINYRAG_ENV_FILE=relative,
        TINYRAG_DATA_DIR=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "True relative 100"


def test_the_wsgi_entry_point_reads_the_dotenv_file_too(tmp_path):
    """gunicorn imports tinyrag_site.wsgi, which needs no DJANGO_SETTINGS_MODULE set."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "SECRET_KEY=from-dotenv-0123456789-abcdefghijklmnopqrstuvwxyz\nTINYRAG_INDEX_NAME=wsgi\n",
        encoding="utf-8",
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "TINYRAG_ENV_FILE"}
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tinyrag_site.wsgi; from django.conf import settings; "
            "print(settings.DEBUG, settings.SECRET_KEY[:11], settings.TINYRAG_INDEX_NAME)",
        ],
        cwd=ROOT,
        env={**base, "TINYRAG_ENV_FILE": str(env_file), "TINYRAG_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "False from-dotenv wsgi"
