"""The web tier imports no ML library: the URLconf (every page and API view), the health
checks and the OpenAI describer load without torch, transformers, faiss or
sentence-transformers, which only the first search or description imports.

Each probe runs in a fresh interpreter: in this one, other tests have imported them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "faiss", "sentence_transformers")

PROBE = """
import json, sys
import django
django.setup()
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
{then}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_modules_after_importing(*modules: str, then: str = "", **environ: str) -> list[str]:
    """The heavy libraries in sys.modules of a fresh, set-up Django process after importing
    `modules` and running the code `then`, with `environ` added to its environment."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **environ}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, then=then), *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only: the probe takes seconds
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        "tinyrag_site.urls",  # every page and API view
        "search.ops.health",  # /readyz and doctor
        "search.ml.registry",  # the model factories, before any model is asked for
        "search.ml.vlm",
        "search.ml.vlm.base",
        "search.ml.vlm.openai",
    ],
)
def test_the_web_tier_imports_no_ml_library(module):
    assert heavy_modules_after_importing(module) == []


def test_the_probe_sees_a_heavy_import():
    """Control: the probe does report a library that is imported (CLIP's embedders)."""
    loaded = heavy_modules_after_importing("search.ml.clip")

    assert "torch" in loaded
    assert "sentence_transformers" in loaded


@pytest.mark.django_db
def test_showing_the_published_index_imports_no_faiss(search_index, settings):
    """The collections page says which index is published from its manifest alone; only a
    search (or /readyz, which loads it on purpose) imports faiss."""
    status = "s = index_status(); assert s.manifest.name == 'tiny', s.problem"
    index_dir = str(settings.TINYRAG_INDEX_DIR)
    seen = heavy_modules_after_importing(
        "search.index.selectors",
        then=f"from search.index.selectors import index_status; {status}",
        TINYRAG_INDEX_DIR=index_dir,
        TINYRAG_INDEX_NAME="tiny",
    )
    assert seen == []
    loading = heavy_modules_after_importing(  # control: loading the index does import it
        "search.index.selectors",
        then="from search.index.selectors import index_status; s = index_status(load=True)",
        TINYRAG_INDEX_DIR=index_dir,
        TINYRAG_INDEX_NAME="tiny",
    )
    assert "faiss" in loading
