"""Fixtures for the API tests: the built index as arrays, tokens, throttle state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token

INDEX_NAME = "tiny"


@dataclass(frozen=True)
class BuiltIndex:
    root: Path  # the prepared dataset
    ids: np.ndarray  # the published ids.npy
    vectors: np.ndarray  # the published embeddings.npy, row-aligned with ids


@pytest.fixture
def index_built(search_index, clip_settings) -> BuiltIndex:
    """The published index "tiny" (see tests/conftest.py) with its vectors loaded."""
    folder = clip_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    return BuiltIndex(
        root=search_index,
        ids=np.load(folder / "ids.npy"),
        vectors=np.load(folder / "embeddings.npy"),
    )


@pytest.fixture
def api_token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def api_rate(settings):
    """Set every per-user rate (API requests, searches, descriptions), e.g. api_rate("3/minute"),
    with fresh counters."""

    def set_rate(rate: str) -> None:
        settings.TINYRAG_API_RATE = settings.TINYRAG_SEARCH_RATE = rate
        settings.TINYRAG_DESCRIBE_RATE = rate
        cache.clear()

    return set_rate
