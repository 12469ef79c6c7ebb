"""Download the configured models from the Hugging Face hub and prove that they load, so the
app runs offline later: the service behind `manage.py setup_models`.

A model id is read as the app reads it (`search.ml.local.locate_model`): a local directory is
used as it is, a hub id is downloaded into the Hugging Face cache (or a given cache folder).
CLIP and the text encoder are then loaded once through the app's own embedders and made to
embed one string (and one image), the translation model to translate one; the VLM snapshot
is only checked for completeness, not loaded. A model that cannot be had raises
`SetupFailed` with one line of reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from django.conf import settings
from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import (
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
)
from PIL import Image
from transformers.utils import logging as transformers_logging

from search.errors import InvalidInput
from search.ml.clip import ClipEmbedder, SentenceTransformerEmbedder
from search.ml.errors import ModelError, first_line
from search.ml.local import LocalModel, UnusableModelId, locate_model
from search.ml.query_models import QueryModelKind, query_models
from search.ml.registry import current_target
from search.ml.translate import Translator
from search.ml.vlm.transformers import TransformersDescriber

DEFAULT_VLM_MODEL = "Qwen/Qwen2-VL-2B-Instruct"  # as settings default it, for settings without it
# Formats TinyRAG never loads (it runs PyTorch weights); skipping them saves gigabytes.
IGNORED_FILES = [
    "onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot",
    "*.tflite", "*.gguf", "*.mlmodel", "tf_model*", "flax_model*", "rust_model*",
]  # fmt: skip
HUB_TIMEOUT_S = 15.0  # for the first request; offline, DNS fails at once anyway


class ModelKind(StrEnum):
    CLIP = "clip"  # loaded and run on one string and one image
    TEXT = "text"  # loaded and run on one string
    TRANSLATE = "translate"  # loaded and run on one string
    VLM = "vlm"  # snapshot checked only: loading 2B parameters belongs to the describe worker


# The app's wrapper of each kind: how it reads a model id (`bare_name_org`) and loads it.
WRAPPERS: dict[ModelKind, type[LocalModel]] = {
    ModelKind.CLIP: ClipEmbedder,
    ModelKind.TEXT: SentenceTransformerEmbedder,
    ModelKind.TRANSLATE: Translator,
    ModelKind.VLM: TransformersDescriber,
}
# A sentence the translation model is made to translate (the app's own example query).
TRANSLATE_PROBE = "cari kucing mesir"


@dataclass(frozen=True)
class ModelSpec:
    kind: ModelKind
    model_id: str
    setting: str


@dataclass(frozen=True)
class Fetched:
    path: Path  # a local directory or the cached snapshot
    source: str  # how it was had, for the report


@dataclass(frozen=True)
class Verified:
    """What loading an embedder proved: it runs, with this output size, there."""

    dim: int  # 0 for the translation model: it writes text, not vectors
    device: str
    precision: str
    seconds: float  # to load it and embed once


@dataclass(frozen=True)
class SetUpModel:
    spec: ModelSpec
    fetched: Fetched
    size: int  # bytes on disk
    verified: Verified | None  # None for the VLM: checked, not loaded


class SetupFailed(Exception):
    """One model could not be set up; the message is the reason, without the remedy."""


def selected_models(
    *, clip: bool, text: bool, vlm: bool, translate: bool = False
) -> list[ModelSpec]:
    """The models to set up: those asked for, or, when none is, the models searches take
    with these settings (search.ml.query_models: CLIP, the multilingual encoder of
    TINYRAG_TEXT_MODEL, the translation model on the translate route). InvalidInput when
    the text encoder or the translation model is asked for but not configured."""
    none_chosen = not (clip or text or vlm or translate)
    if text and not settings.TINYRAG_TEXT_MODEL:
        raise InvalidInput(
            "TINYRAG_TEXT_MODEL is empty (search uses CLIP's own text encoder); set it, e.g. to "
            "sentence-transformers/clip-ViT-B-32-multilingual-v1."
        )
    if translate and not settings.TINYRAG_TRANSLATE_MODEL:
        raise InvalidInput(
            "TINYRAG_TRANSLATE_MODEL is empty; set it, e.g. to Helsinki-NLP/opus-mt-id-en."
        )
    kinds = {
        QueryModelKind.CLIP: ModelKind.CLIP,
        QueryModelKind.TEXT: ModelKind.TEXT,
        QueryModelKind.TRANSLATE: ModelKind.TRANSLATE,
    }
    needed = {
        kinds[m.kind]: ModelSpec(kinds[m.kind], m.model_id, m.setting) for m in query_models()
    }
    asked = {ModelKind.CLIP: clip, ModelKind.TEXT: text, ModelKind.TRANSLATE: translate}
    configured = {
        ModelKind.CLIP: ModelSpec(
            ModelKind.CLIP, settings.TINYRAG_CLIP_MODEL, "TINYRAG_CLIP_MODEL"
        ),
        ModelKind.TEXT: ModelSpec(
            ModelKind.TEXT, settings.TINYRAG_TEXT_MODEL, "TINYRAG_TEXT_MODEL"
        ),
        ModelKind.TRANSLATE: ModelSpec(
            ModelKind.TRANSLATE, settings.TINYRAG_TRANSLATE_MODEL, "TINYRAG_TRANSLATE_MODEL"
        ),
    }
    specs = [
        needed[kind] if none_chosen else configured[kind]
        for kind in (ModelKind.CLIP, ModelKind.TEXT, ModelKind.TRANSLATE)
        if (none_chosen and kind in needed) or asked[kind]
    ]
    if vlm:
        vlm_model = getattr(settings, "TINYRAG_VLM_MODEL", "") or DEFAULT_VLM_MODEL
        specs.append(ModelSpec(ModelKind.VLM, vlm_model, "TINYRAG_VLM_MODEL"))
    return specs


def set_up_model(
    spec: ModelSpec,
    *,
    cache_dir: Path | None = None,
    quiet: bool = True,
    progress_bars: bool = True,
    notify: Callable[[str], object] = lambda message: None,
) -> SetUpModel:
    """Fetch one model (local directory, cache, or download) and verify it; SetupFailed.

    `quiet` hides the libraries' INFO logs and weight-loading bars, `progress_bars` the
    hub's per-file download bars; `notify` gets a line before a download starts.
    """
    with _libraries_quiet(quiet):
        fetched = _fetch(spec, cache_dir, progress_bars=progress_bars, notify=notify)
        size = _dir_size(fetched.path)
        if spec.kind is ModelKind.VLM:
            _check_snapshot(fetched.path)
            return SetUpModel(spec, fetched, size, verified=None)
        return SetUpModel(spec, fetched, size, verified=_verify_embedder(spec, cache_dir))


def ignored_files(names: list[str]) -> list[str]:
    """IGNORED_FILES plus any *.bin beside a *.safetensors (same weights, older format)."""
    with_safetensors = {str(Path(name).parent) for name in names if name.endswith(".safetensors")}
    duplicates = [
        name
        for name in names
        if name.endswith(".bin") and str(Path(name).parent) in with_safetensors
    ]
    return IGNORED_FILES + duplicates


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


# -- fetching -----------------------------------------------------------------------------------


def _fetch(
    spec: ModelSpec, cache_dir: Path | None, *, progress_bars: bool, notify: Callable[[str], object]
) -> Fetched:
    try:
        location = locate_model(spec.model_id, bare_name_org=WRAPPERS[spec.kind].bare_name_org)
    except UnusableModelId as exc:
        raise SetupFailed(str(exc)) from None
    if location.directory is not None:
        return Fetched(location.directory.resolve(), "local directory")
    assert location.repo_id is not None
    return _download(location.repo_id, cache_dir, progress_bars=progress_bars, notify=notify)


def _download(
    repo_id: str, cache_dir: Path | None, *, progress_bars: bool, notify: Callable[[str], object]
) -> Fetched:
    where = str(cache_dir) if cache_dir else "the Hugging Face cache"

    def cached(unreachable: str) -> Fetched:
        try:
            snapshot = snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True)
        except LocalEntryNotFoundError:
            raise SetupFailed(f"{unreachable}, and it is not in {where}") from None
        return Fetched(Path(snapshot), f"{unreachable}; using the copy in {where}")

    if constants.HF_HUB_OFFLINE:
        return cached("HF_HUB_OFFLINE is set")
    # One request without retries first: offline, the download client would retry each
    # file with back-off for minutes; this fails in milliseconds and lists the files.
    try:
        info = HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S, files_metadata=True)
    except (RepositoryNotFoundError, GatedRepoError):
        raise SetupFailed(
            "no such model on the Hugging Face hub (or it is private/gated: log in with "
            "`hf auth login`)"
        ) from None
    except HfHubHTTPError as exc:
        return cached(f"the Hugging Face hub answered {first_line(exc)}")
    except Exception as exc:  # DNS, connection refused, timeout, proxy: all "unreachable"
        return cached(f"the Hugging Face hub is unreachable ({first_line(exc)})")

    files = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
    ignored = ignored_files(list(files))
    wanted = [name for name in files if not any(fnmatch(name, pattern) for pattern in ignored)]
    total = sum(files[name] for name in wanted)
    notify(f"  downloading {len(wanted)} files ({format_size(total)}) into {where}")
    try:
        with _hub_progress(progress_bars):
            # The default revision, not info.sha: only a branch download updates refs/main,
            # which is how the app finds the snapshot later.
            snapshot = snapshot_download(repo_id, cache_dir=cache_dir, ignore_patterns=ignored)
    except Exception as exc:  # a dropped connection or a full disk, mid-download
        raise SetupFailed(f"download failed: {first_line(exc)}") from exc
    return Fetched(Path(snapshot), f"downloaded revision {Path(snapshot).name[:10]}")


@contextlib.contextmanager
def _hub_progress(enabled: bool) -> Iterator[None]:
    """huggingface_hub's own per-file tqdm bars, or none."""
    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


@contextlib.contextmanager
def _libraries_quiet(quiet: bool) -> Iterator[None]:
    """Hide the libraries' INFO logs and weight-loading bars (the caller prints its own
    one-line summary per model)."""
    if not quiet:
        yield
        return
    loggers = [
        logging.getLogger(name)
        for name in ("sentence_transformers", "transformers", "faiss", "search.ml")
    ]
    levels = [logger.level for logger in loggers]
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bars_were_on:
            transformers_logging.enable_progress_bar()


# -- verifying ----------------------------------------------------------------------------------


def _verify_translator(spec: ModelSpec, cache_dir: Path | None) -> Verified:
    """Load the translation model through the app's own wrapper and translate one query."""
    started = time.monotonic()
    try:
        target = current_target()
        translator = Translator(
            spec.model_id, device=target.device, precision=target.precision, cache_dir=cache_dir
        )
        (english,) = translator.translate([TRANSLATE_PROBE])
    except ModelError as exc:
        raise SetupFailed(getattr(exc, "reason", None) or str(exc)) from exc
    if not english.strip():
        raise SetupFailed(f"it translated {TRANSLATE_PROBE!r} into nothing")
    return Verified(
        dim=0,
        device=translator.device,
        precision=translator.precision.value,
        seconds=time.monotonic() - started,
    )


def _verify_embedder(spec: ModelSpec, cache_dir: Path | None) -> Verified:
    """Load the model through the app's own embedder and embed one input of each kind."""
    if spec.kind is ModelKind.TRANSLATE:
        return _verify_translator(spec, cache_dir)
    cls = WRAPPERS[spec.kind]
    started = time.monotonic()
    try:
        target = current_target()
        embedder = cls(
            spec.model_id,
            device=target.device,
            precision=target.precision,
            cache_dir=cache_dir,
            setting=spec.setting,
        )
        vectors = [embedder.embed_texts(["a photo of a golden retriever"])]
        if isinstance(embedder, ClipEmbedder):
            gradient = np.linspace(0, 255, 64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
            vectors.append(embedder.embed_images([Image.fromarray(gradient)]))
    except ModelError as exc:
        raise SetupFailed(getattr(exc, "reason", None) or str(exc)) from exc
    for vector in vectors:
        if vector.shape != (1, embedder.dim) or not np.all(np.isfinite(vector)):
            raise SetupFailed(f"it produced a {vector.shape} output with non-finite values")
    return Verified(
        dim=embedder.dim,
        device=embedder.device,
        precision=embedder.precision.value,
        seconds=time.monotonic() - started,
    )


def _check_snapshot(path: Path) -> None:
    """A transformers checkpoint is complete: config and every weight shard are present."""
    if not (path / "config.json").is_file():
        raise SetupFailed(f"{path} has no config.json")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        missing = sorted(shard for shard in shards if not (path / shard).is_file())
        if missing:
            raise SetupFailed(f"{path} lacks weight shards {', '.join(missing)}")
    elif not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise SetupFailed(f"{path} holds no weights (*.safetensors or *.bin)")


def _dir_size(path: Path) -> int:
    """Bytes of the files under path, following the HF cache's symlinks to their blobs."""
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())
