"""What every describer shares: the `Describer` protocol, its result, its errors, and the
pixel bounds an image is resized within (identical for both backends, so a served model sees
as many visual tokens as the local one). No torch, no transformers.

Configuration problems are `ModelLoadError`s (at `load()` or when `describe()` is called);
failures while generating are `GenerationError`s, raised after any pieces already handed over:
out of memory, an unreachable or failing server, a malformed or stalled stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import Image

from search.ml.errors import ModelError

BACKENDS = ("transformers", "openai", "none")
MODEL_SETTING = "TINYRAG_VLM_MODEL"
URL_SETTING = "TINYRAG_VLM_URL"
TIMEOUT_SETTING = "TINYRAG_VLM_TIMEOUT"
# Qwen2-VL sees 14-pixel patches merged 2x2: image sides are multiples of 28.
PIXEL_FACTOR = 28


class GenerationError(ModelError):
    """Generating a description failed at run time (not a configuration problem)."""


class VLMConfigurationError(ModelError, ImproperlyConfigured):
    """TINYRAG_VLM_BACKEND (or another VLM setting) has a value TinyRAG cannot use."""


@dataclass(frozen=True)
class Described:
    """A finished description: its text and how many tokens the model generated for it."""

    text: str
    tokens: int


@runtime_checkable
class Describer(Protocol):
    """Writes text about one image, handing each piece over as it is generated."""

    backend: str  # "transformers" | "openai"

    @property
    def model_id(self) -> str: ...

    def load(self) -> None: ...

    def describe(
        self,
        image: Image.Image,
        prompt: str,
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        on_piece: Callable[[str], object] | None = None,
    ) -> Described: ...


def pixel_bounds() -> tuple[int, int]:
    """(min, max) pixels of an image as the VLM sees it, from the settings, checked."""
    min_pixels = int(settings.TINYRAG_VLM_MIN_PIXELS)
    max_pixels = int(settings.TINYRAG_VLM_MAX_PIXELS)
    if min_pixels < PIXEL_FACTOR**2 or max_pixels < min_pixels:
        raise VLMConfigurationError(
            f"TINYRAG_VLM_MIN_PIXELS={min_pixels} and TINYRAG_VLM_MAX_PIXELS={max_pixels} must "
            f"satisfy {PIXEL_FACTOR**2} <= min <= max."
        )
    return min_pixels, max_pixels


def fit_pixels(
    width: int, height: int, *, min_pixels: int, max_pixels: int, factor: int = PIXEL_FACTOR
) -> tuple[int, int]:
    """The (width, height) Qwen2-VL resizes an image to: sides multiples of `factor`, area
    within [min_pixels, max_pixels], aspect ratio kept as far as that allows (qwen-vl-utils'
    `smart_resize`, restated here because qwen-vl-utils imports torch and the openai backend
    must not)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(width, height) / min(width, height) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is beyond Qwen2-VL's limit of 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


def check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
    """ValueError unless 1 <= max_new_tokens and 0 <= min_new_tokens <= max_new_tokens."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(
            f"min_new_tokens must be within [0, max_new_tokens={max_new_tokens}], "
            f"got {min_new_tokens}"
        )
