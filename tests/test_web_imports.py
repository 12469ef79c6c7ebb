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
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_modules_after_importing(*modules: str) -> list[str]:
    """The heavy libraries in sys.modules of a fresh, set-up Django process after importing
    `modules`."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *modules],
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
