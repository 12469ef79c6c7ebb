"""Models run in this process, loaded from a local directory or the hub cache, never the network.

`LocalModel` is what the CLIP embedders and the Qwen2-VL describer share: their identity
(model id, device, precision), whether they are loaded, the `ModelLoadError` that names the
setting to fix, and how a model id becomes a directory on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.ml.device import Precision
from search.ml.errors import ModelLoadError, first_line
from search.ml.names import hub_repo_id, looks_like_path


class LocalModel:
    """Identity, state and load errors of a model wrapper; subclasses set the attributes in
    `__init__` and say how their repositories look (`marker`, `bare_name_org`)."""

    # A file every repository of this kind holds at its root: how a cached snapshot is found.
    marker = "config.json"
    # A local directory must hold `marker` too (else the loader finds out, in its own words).
    marker_required = False
    # The hub organisation a bare name ("clip-ViT-B-32") belongs to; None: bare names are
    # not hub ids.
    bare_name_org: str | None = None

    _model_id: str
    _device: str
    _precision: Precision
    _cache_dir: str | None
    _model: Any
    setting: str

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return (
            f"{type(self).__name__}({self._model_id!r}, device={self._device!r}, "
            f"precision={self._precision.value}{self._repr_extra()}, {state})"
        )

    def _repr_extra(self) -> str:
        return ""

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def device(self) -> str:
        return self._device

    @property
    def precision(self) -> Precision:
        return self._precision

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _error(self, reason: str) -> ModelLoadError:
        return ModelLoadError(self._model_id, self.setting, reason)

    def _local_directory(self) -> str:
        """The directory to load: the configured one, or the cached snapshot of a hub id.

        Resolved here, on the filesystem only, rather than by the loading library: even with
        local_files_only its hub lookups can make HTTP requests, and offline the hub client
        retries for minutes. Downloads belong to `manage.py setup_models`.
        """
        from huggingface_hub import try_to_load_from_cache

        raw = self._model_id.strip()
        if not raw:
            raise self._error("no model id is configured")
        path = Path(raw).expanduser()
        if path.is_dir():
            if self.marker_required and not (path / self.marker).is_file():
                raise self._error(f"its directory has no {self.marker}")
            return str(path)
        if path.exists():
            raise self._error("it is a file, not a model directory")
        repo_id = hub_repo_id(raw, self.bare_name_org)
        if looks_like_path(raw) or repo_id is None:
            raise self._error("its directory does not exist")
        try:
            cached = try_to_load_from_cache(repo_id, self.marker, cache_dir=self._cache_dir)
        except ValueError as exc:  # not a valid hub repository id
            raise self._error(f"it is not a hub id or a directory ({first_line(exc)})") from exc
        if not isinstance(cached, str):  # None, or the hub's "known to be absent" marker
            where = "TINYRAG_MODEL_DIR" if self._cache_dir else "the Hugging Face cache"
            raise self._error(f"it is neither a local directory nor downloaded into {where}")
        return str(Path(cached).parent)
