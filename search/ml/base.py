"""The one shape every model wrapper has (immich machine-learning's `InferenceModel`).

A wrapper is cheap to create: heavy work happens in `load()`, which takes the wrapper's lock,
returns at once when the model is loaded and otherwise calls the subclass's `_load()`. The
inference methods (`embed_texts`, `describe`, ...) call `load()` first, so the first use loads.
Subclasses implement `_load()` only and never lock themselves. No torch here: the OpenAI
describer, which runs no model in this process, is a wrapper too.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod

logger = logging.getLogger(__name__)


class InferenceModel(ABC):
    """A model loaded once, lazily, under a lock; `loaded` says whether `_load()` succeeded.

    A failed `_load()` leaves the wrapper unloaded, so the next `load()` tries again (and
    raises again, with the same clear error, until the operator fixes the cause).
    """

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load the model once; later calls (from any thread) return at once."""
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:  # loaded by the thread we waited for
                return
            started = time.perf_counter()
            self._load()
            self._loaded = True
        logger.info("Loaded %r in %.1f s", self, time.perf_counter() - started)

    @abstractmethod
    def _load(self) -> None:
        """Build the model (read files, allocate weights, check configuration); raise
        `search.ml.errors.ModelLoadError` when it cannot be had."""
