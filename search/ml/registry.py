"""The process-wide model registry: every model is created lazily, once, on first use.

Nothing is built at import time or in AppConfig.ready(): a web worker that never embeds never
pays for a model. Keys carry everything that changes the model (id, device, precision, cache
folder), so different settings (tests use override_settings) get different instances::

    embedder = get_clip_embedder()      # cheap: the instance; embedding loads it once
    vectors = embedder.embed_texts(["a red bus"])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings

if TYPE_CHECKING:  # imported lazily below: importing this module must not import torch
    from search.ml.clip import ClipEmbedder, TextEmbedder
    from search.ml.device import ComputeTarget

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
    from search.ml.device import compute_target

    return compute_target(settings.TINYRAG_DEVICE, force_fp32=settings.TINYRAG_FORCE_FP32)


def get_clip_embedder() -> ClipEmbedder:
    """The CLIP embedder of TINYRAG_CLIP_MODEL (images and English text); not yet loaded."""
    from search.ml.clip import ClipEmbedder

    return _embedder(ClipEmbedder, settings.TINYRAG_CLIP_MODEL, "TINYRAG_CLIP_MODEL")


def get_text_embedder() -> TextEmbedder:
    """The query-text embedder: TINYRAG_TEXT_MODEL (multilingual) when set, else CLIP itself."""
    from search.ml.clip import SentenceTransformerEmbedder

    if not settings.TINYRAG_TEXT_MODEL:
        return get_clip_embedder()
    return _embedder(SentenceTransformerEmbedder, settings.TINYRAG_TEXT_MODEL, "TINYRAG_TEXT_MODEL")


def _embedder(cls: type[T], model_id: str, setting: str) -> T:
    model_id = str(model_id)  # tests may set a Path
    target = current_target()
    cache_dir = settings.TINYRAG_MODEL_DIR or None
    batch_size = settings.TINYRAG_EMBED_BATCH_SIZE
    key = (cls.__name__, model_id, target.device, target.precision, cache_dir, batch_size)
    return registry.get(
        key,
        lambda: cls(
            model_id,
            device=target.device,
            precision=target.precision,
            batch_size=batch_size,
            cache_dir=cache_dir,
            setting=setting,
        ),
    )
