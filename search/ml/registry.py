"""The process-wide model registry: every model is created lazily, once, on first use.

Every factory lives here: `get_clip_embedder`, `get_multilingual_embedder` (and
`get_text_embedder`), `get_translator`, `get_describer`, and the one answer to "are
descriptions enabled?" (`describer_enabled`). Nothing is built at import
time or in AppConfig.ready(): a web worker that never embeds never pays for a model, and
importing this module imports no torch. Keys carry everything that changes the model (id,
device, precision, cache folder), so different settings (tests use override_settings) get
different instances::

    embedder = get_clip_embedder()      # cheap: the instance; embedding loads it once
    vectors = embedder.embed_texts(["a red bus"])
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

from search.ml.vlm.base import BACKENDS, Describer, VLMConfigurationError, pixel_bounds
from search.ml.vlm.openai import OpenAIDescriber

if TYPE_CHECKING:  # imported lazily below: importing this module must not import torch
    from search.ml.clip import ClipEmbedder, SentenceTransformerEmbedder, TextEmbedder
    from search.ml.device import ComputeTarget
    from search.ml.translate import Translator

T = TypeVar("T")


class ModelRegistry:
    """Thread-safe lazy map key -> model: `get(key, factory)` calls factory once per key.

    A factory runs under its own key's lock, so a slow build of one model never blocks
    another, and two threads asking for the same key get the same instance.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the two dicts, never held while building
        self._items: dict[Hashable, Any] = {}
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                return self._items[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:  # built by the thread we waited for
                    return self._items[key]
            item = factory()
            with self._lock:
                self._items[key] = item
                self._building.pop(key, None)
            return item

    def clear(self) -> None:
        """Forget every model (tests; a settings reload). In-flight builds still finish."""
        with self._lock:
            self._items.clear()
            self._building.clear()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


registry = ModelRegistry()


def current_target() -> ComputeTarget:
    """The device and precision the settings ask for, resolved on this machine."""
    from search.ml.device import compute_target  # here: it imports torch

    return compute_target(settings.TINYRAG_DEVICE, force_fp32=settings.TINYRAG_FORCE_FP32)


def get_clip_embedder() -> ClipEmbedder:
    """The CLIP embedder of TINYRAG_CLIP_MODEL (images and English text); not yet loaded."""
    from search.ml.clip import ClipEmbedder  # here: it imports torch

    return _embedder(ClipEmbedder, settings.TINYRAG_CLIP_MODEL, "TINYRAG_CLIP_MODEL")


def get_multilingual_embedder() -> SentenceTransformerEmbedder:
    """The multilingual text encoder of TINYRAG_TEXT_MODEL (the route of queries not in
    English); not yet loaded. An empty setting fails on first use, naming the setting."""
    from search.ml.clip import SentenceTransformerEmbedder  # here: it imports torch

    return _embedder(SentenceTransformerEmbedder, settings.TINYRAG_TEXT_MODEL, "TINYRAG_TEXT_MODEL")


def get_text_embedder() -> TextEmbedder:
    """The text encoder a non-English query uses without routing: TINYRAG_TEXT_MODEL when
    set, else CLIP itself."""
    if not settings.TINYRAG_TEXT_MODEL:
        return get_clip_embedder()
    return get_multilingual_embedder()


def get_translator() -> Translator:
    """The MarianMT translator of TINYRAG_TRANSLATE_MODEL (the translate route); not yet
    loaded."""
    from search.ml.translate import Translator  # here: it imports torch

    return _local_model(
        Translator,
        settings.TINYRAG_TRANSLATE_MODEL,
        num_beams=settings.TINYRAG_TRANSLATE_BEAMS,
        max_new_tokens=settings.TINYRAG_TRANSLATE_MAX_TOKENS,
    )


def translator_loaded() -> bool:
    """Whether this process has loaded the translator of the settings (loads nothing and
    imports no torch when it has not been asked for yet)."""
    import sys

    if "search.ml.translate" not in sys.modules:
        return False
    return get_translator().loaded


def _embedder(cls: type[T], model_id: str, setting: str) -> T:
    return _local_model(
        cls, model_id, batch_size=settings.TINYRAG_EMBED_BATCH_SIZE, setting=setting
    )


def _local_model(cls: type[T], model_id: str, **options: Hashable) -> T:
    """One `cls(model_id, device=, precision=, cache_dir=, **options)` per distinct value of
    all of them: the device and precision the settings ask for, the download folder."""
    model_id = str(model_id)  # tests may set a Path
    target = current_target()
    cache_dir = settings.TINYRAG_MODEL_DIR or None
    key = (
        cls.__name__, model_id, target.device, target.precision, cache_dir,
        *sorted(options.items()),
    )  # fmt: skip
    return registry.get(
        key,
        lambda: cls(
            model_id,
            device=target.device,
            precision=target.precision,
            cache_dir=cache_dir,
            **options,
        ),
    )


# TINYRAG_VLM_BACKEND values that turn descriptions off: "none", and unset or empty.
DISABLED_BACKENDS = frozenset({"", "none"})


def _vlm_backend() -> str:
    return (settings.TINYRAG_VLM_BACKEND or "").strip().lower()


def describer_enabled() -> bool:
    """Whether this server writes descriptions: TINYRAG_VLM_BACKEND is set and not "none".

    Reads the settings only and loads nothing, so pages can ask it to decide whether to show
    Describe buttons. An unknown backend counts as enabled: `get_describer()` then raises its
    configuration error, which names the setting, rather than the feature silently vanishing.
    """
    return _vlm_backend() not in DISABLED_BACKENDS


def describes_in_process() -> bool:
    """Whether descriptions are written by a model this process loads (the transformers
    backend), not by a served one; reads the settings only."""
    return _vlm_backend() == "transformers"


def get_describer() -> Describer | None:
    """The describer the settings ask for (not loaded yet); None when descriptions are off
    (`describer_enabled()` is false). VLMConfigurationError for an unknown backend.

    One instance per distinct configuration, from the process-wide model registry.
    """
    if not describer_enabled():
        return None
    backend = _vlm_backend()
    if backend not in BACKENDS:
        raise VLMConfigurationError(
            f"TINYRAG_VLM_BACKEND={settings.TINYRAG_VLM_BACKEND!r} is not one of "
            f"{', '.join(BACKENDS)}."
        )
    min_pixels, max_pixels = pixel_bounds()
    timeout = float(settings.TINYRAG_VLM_TIMEOUT) or None  # 0: wait as long as it takes
    if backend == "openai":
        return _openai_describer(min_pixels, max_pixels, timeout)
    return _transformers_describer(min_pixels, max_pixels, timeout)


def _transformers_describer(min_pixels: int, max_pixels: int, timeout: float | None) -> Describer:
    from search.ml.vlm.transformers import TransformersDescriber  # here: it imports torch

    target = current_target()
    model_id = settings.TINYRAG_VLM_MODEL
    cache_dir = settings.TINYRAG_MODEL_DIR or None
    # On by default (benchmarks/generate_speed.py): faster decoding on CPUs, +1 byte/param.
    int8_decode = settings.TINYRAG_VLM_INT8_DECODE
    key = (
        TransformersDescriber.__name__, model_id, target.device, target.precision,
        cache_dir, min_pixels, max_pixels, timeout, int8_decode,
    )  # fmt: skip
    return registry.get(
        key,
        lambda: TransformersDescriber(
            model_id,
            device=target.device,
            precision=target.precision,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            cache_dir=cache_dir,
            timeout=timeout,
            int8_decode=int8_decode,
        ),
    )


def _openai_describer(min_pixels: int, max_pixels: int, timeout: float | None) -> Describer:
    url = settings.TINYRAG_VLM_URL
    served = settings.TINYRAG_VLM_SERVED_MODEL or settings.TINYRAG_VLM_MODEL
    api_key = settings.TINYRAG_VLM_API_KEY or ""
    # The key changes the instance, but a registry key is no place for a secret in clear.
    key_digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""
    key = (OpenAIDescriber.__name__, url, served, key_digest, timeout, min_pixels, max_pixels)
    return registry.get(
        key,
        lambda: OpenAIDescriber(
            url,
            served_model=served,
            api_key=api_key,
            timeout=timeout,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
        ),
    )
