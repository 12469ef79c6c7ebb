"""Models run in this process, loaded from a local directory or the hub cache, never the network.

`locate_model` is the one reading of a configured model id: a local directory, or the hub
repository it names. `LocalModel` (the CLIP embedders, the Qwen2-VL describer) finds that
repository's snapshot in the cache; `search.ml.setup` downloads it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import try_to_load_from_cache

from search.ml.base import InferenceModel
from search.ml.errors import ModelLoadError, first_line
from search.ml.names import hub_repo_id, looks_like_path

if TYPE_CHECKING:
    from search.ml.device import Precision


class UnusableModelId(ValueError):
    """A model id that names neither a local directory nor a hub repository; the message is
    the reason, fit to follow "Cannot load model X: "."""


@dataclass(frozen=True)
class ModelLocation:
    """Where a model id points: exactly one of a local directory and a hub repository id."""

    directory: Path | None = None
    repo_id: str | None = None


def locate_model(model_id: str, *, bare_name_org: str | None = None) -> ModelLocation:
    """A local directory when `model_id` is one, else the hub repository it names (a bare
    name belongs to `bare_name_org`; None: bare names are not hub ids). Filesystem only.
    UnusableModelId when it is empty, a file, or a path that does not exist."""
    raw = model_id.strip()
    if not raw:
        raise UnusableModelId("no model id is configured")
    path = Path(raw).expanduser()
    if path.is_dir():
        return ModelLocation(directory=path)
    if path.exists():
        raise UnusableModelId("it is a file, not a model directory")
    repo_id = hub_repo_id(raw, bare_name_org)
    if looks_like_path(raw) or repo_id is None:
        raise UnusableModelId("its directory does not exist")
    return ModelLocation(repo_id=repo_id)


class LocalModel(InferenceModel):
    """Identity and load errors of an in-process model; subclasses set the attributes in
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

    def _error(self, reason: str) -> ModelLoadError:
        return ModelLoadError(self._model_id, self.setting, reason)

    def _local_directory(self) -> str:
        """The directory to load: the configured one, or the cached snapshot of a hub id.

        Resolved here, on the filesystem only, rather than by the loading library: even with
        local_files_only its hub lookups can make HTTP requests, and offline the hub client
        retries for minutes. Downloads belong to `manage.py setup_models`.
        """
        try:
            location = locate_model(self._model_id, bare_name_org=self.bare_name_org)
        except UnusableModelId as exc:
            raise self._error(str(exc)) from None
        if location.directory is not None:
            if self.marker_required and not (location.directory / self.marker).is_file():
                raise self._error(f"its directory has no {self.marker}")
            return str(location.directory)
        try:
            cached = try_to_load_from_cache(
                location.repo_id, self.marker, cache_dir=self._cache_dir
            )
        except ValueError as exc:  # not a valid hub repository id
            raise self._error(f"it is not a hub id or a directory ({first_line(exc)})") from exc
        if not isinstance(cached, str):  # None, or the hub's "known to be absent" marker
            where = "TINYRAG_MODEL_DIR" if self._cache_dir else "the Hugging Face cache"
            raise self._error(f"it is neither a local directory nor downloaded into {where}")
        return str(Path(cached).parent)
