"""Download the configured models and prove that they load, so search works offline later.

    manage.py setup_models                    # CLIP, plus TINYRAG_TEXT_MODEL when set
    manage.py setup_models --clip --text --vlm
    manage.py setup_models --dir /srv/models  # download there (then set TINYRAG_MODEL_DIR)

A hub id is downloaded into the Hugging Face cache (or --dir, or TINYRAG_MODEL_DIR); a local
directory is used as it is. CLIP and the text encoder are then loaded once through the same
code the app uses and made to embed one string (and one image); the VLM snapshot is only
checked for completeness, not loaded. A model that cannot be had gets one line naming the
variable that can point at a local directory instead; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from search.ml.errors import first_line

DEFAULT_VLM_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
# Formats TinyRAG never loads (it runs PyTorch weights); skipping them saves gigabytes.
IGNORED_FILES = [
    "onnx/*", "openvino/*", "coreml/*", "*.onnx", "*.onnx_data", "*.h5", "*.msgpack", "*.ot",
    "*.tflite", "*.gguf", "*.mlmodel", "tf_model*", "flax_model*", "rust_model*",
]  # fmt: skip
HUB_TIMEOUT_S = 15.0  # for the first request; offline, DNS fails at once anyway


class ModelKind(StrEnum):
    CLIP = "clip"  # loaded and run on one string and one image
    TEXT = "text"  # loaded and run on one string
    VLM = "vlm"  # snapshot checked only: loading 2B parameters belongs to the describe worker


@dataclass(frozen=True)
class ModelSpec:
    kind: ModelKind
    model_id: str
    setting: str


@dataclass(frozen=True)
class Fetched:
    path: Path  # a local directory or the cached snapshot
    source: str  # how it was had, for the report


class SetupFailed(Exception):
    """One model could not be set up; the message is the reason, without the remedy."""


class Command(BaseCommand):
    help = (
        "Download the configured models (CLIP, the optional text encoder, the VLM) and check "
        "that each one loads, so the app can run offline."
    )
    # Needs no URLconf, database or app checks; it must work on a half-configured machine.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--clip",
            action="store_true",
            help="Set up TINYRAG_CLIP_MODEL (the default when no flag is given).",
        )
        parser.add_argument(
            "--text",
            action="store_true",
            help="Set up TINYRAG_TEXT_MODEL, the multilingual text encoder "
            "(default: included when that variable is set).",
        )
        parser.add_argument(
            "--vlm",
            action="store_true",
            help="Download and check TINYRAG_VLM_MODEL without loading it.",
        )
        parser.add_argument(
            "--dir",
            type=Path,
            help="Download into this cache folder instead of TINYRAG_MODEL_DIR "
            "or the Hugging Face cache.",
        )

    def handle(self, *args, **options):
        from search.ml.errors import DeviceError
        from search.ml.registry import current_target

        self.verbosity = options["verbosity"]
        specs = self._selected(options)
        try:
            current_target()  # a wrong TINYRAG_DEVICE fails every model: say it once
        except DeviceError as exc:
            raise CommandError(str(exc)) from None
        cache_dir = options["dir"] or settings.TINYRAG_MODEL_DIR or None
        cache_dir = Path(cache_dir).expanduser() if cache_dir else None

        failed: list[ModelSpec] = []
        for spec in specs:
            try:
                with _libraries_quiet(self.verbosity < 2):
                    self._set_up(spec, cache_dir)
            except SetupFailed as exc:
                failed.append(spec)
                self.stderr.write(
                    self.style.ERROR(
                        f"{spec.setting}={spec.model_id!r}: {exc}. Without network, copy the model "
                        f"folder to this machine and set {spec.setting} to that directory."
                    )
                )
        if failed:
            names = ", ".join(spec.setting for spec in failed)
            raise CommandError(f"{len(failed)} of {len(specs)} model(s) not set up: {names}.")
        if cache_dir and options["dir"] and str(cache_dir) != settings.TINYRAG_MODEL_DIR:
            self._say(f"Set TINYRAG_MODEL_DIR={cache_dir} so that the app finds these models.")

    def _selected(self, options) -> list[ModelSpec]:
        text_model = settings.TINYRAG_TEXT_MODEL
        none_chosen = not (options["clip"] or options["text"] or options["vlm"])
        specs = []
        if options["clip"] or none_chosen:
            specs.append(
                ModelSpec(ModelKind.CLIP, settings.TINYRAG_CLIP_MODEL, "TINYRAG_CLIP_MODEL")
            )
        if options["text"] and not text_model:
            raise CommandError(
                "--text: TINYRAG_TEXT_MODEL is empty (search uses CLIP's own text encoder); set "
                "it, e.g. to sentence-transformers/clip-ViT-B-32-multilingual-v1."
            )
        if options["text"] or (none_chosen and text_model):
            specs.append(ModelSpec(ModelKind.TEXT, text_model, "TINYRAG_TEXT_MODEL"))
        if options["vlm"]:
            vlm_model = getattr(settings, "TINYRAG_VLM_MODEL", "") or DEFAULT_VLM_MODEL
            specs.append(ModelSpec(ModelKind.VLM, vlm_model, "TINYRAG_VLM_MODEL"))
        return specs

    def _set_up(self, spec: ModelSpec, cache_dir: Path | None) -> None:
        self._say(f"{spec.setting}: {spec.model_id}", level=2)
        fetched = self._fetch(spec, cache_dir)
        size = _format_size(_dir_size(fetched.path))
        if spec.kind is ModelKind.VLM:
            _check_snapshot(fetched.path)
            self.stdout.write(
                self.style.SUCCESS(
                    f"{spec.setting}: {spec.model_id} is complete ({fetched.source}), {size} at "
                    f"{fetched.path}; not loaded here (the describe worker loads it)."
                )
            )
            return
        started = time.monotonic()
        embedder = _verified_embedder(spec, cache_dir)
        self.stdout.write(
            self.style.SUCCESS(
                f"{spec.setting}: {spec.model_id} works ({fetched.source}): dim {embedder.dim}, "
                f"{embedder.device}/{embedder.precision.value}, loaded and ran in "
                f"{time.monotonic() - started:.1f} s; {size} at {fetched.path}"
            )
        )

    def _fetch(self, spec: ModelSpec, cache_dir: Path | None) -> Fetched:
        from search.ml.clip import SENTENCE_TRANSFORMERS_ORG
        from search.ml.local import hub_repo_id, looks_like_path

        raw = spec.model_id.strip()
        if not raw:
            raise SetupFailed("no model id is configured")
        path = Path(raw).expanduser()
        if path.is_dir():
            return Fetched(path.resolve(), "local directory")
        if path.exists():
            raise SetupFailed(f"{path} is a file, not a model directory")
        if looks_like_path(raw):
            raise SetupFailed(f"the directory {path} does not exist")
        org = None if spec.kind is ModelKind.VLM else SENTENCE_TRANSFORMERS_ORG
        return self._download(hub_repo_id(raw, org) or raw, cache_dir)

    def _download(self, repo_id: str, cache_dir: Path | None) -> Fetched:
        from huggingface_hub import HfApi, constants, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )

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
        ignored = _ignored_files(list(files))
        wanted = [name for name in files if not _matches(name, ignored)]
        total = sum(files[name] for name in wanted)
        self._say(f"  downloading {len(wanted)} files ({_format_size(total)}) into {where}", 1)
        try:
            with self._hub_progress():
                # The default revision, not info.sha: only a branch download updates refs/main,
                # which is how the app finds the snapshot later.
                snapshot = snapshot_download(repo_id, cache_dir=cache_dir, ignore_patterns=ignored)
        except Exception as exc:  # a dropped connection or a full disk, mid-download
            raise SetupFailed(f"download failed: {first_line(exc)}") from exc
        return Fetched(Path(snapshot), f"downloaded revision {Path(snapshot).name[:10]}")

    @contextlib.contextmanager
    def _hub_progress(self) -> Iterator[None]:
        """huggingface_hub's own per-file tqdm bars, silenced at --verbosity 0."""
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        was_disabled = are_progress_bars_disabled()
        if self.verbosity < 1:
            disable_progress_bars()
        try:
            yield
        finally:
            if not was_disabled:
                enable_progress_bars()

    def _say(self, message: str, level: int = 1) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)


@contextlib.contextmanager
def _libraries_quiet(quiet: bool) -> Iterator[None]:
    """Below --verbosity 2, hide the libraries' INFO logs and weight-loading bars: the command
    prints its own one-line summary per model."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as transformers_logging

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


def _verified_embedder(spec: ModelSpec, cache_dir: Path | None):
    """Load the model through the app's own embedder and embed one input of each kind."""
    from search.ml.clip import ClipEmbedder, SentenceTransformerEmbedder
    from search.ml.errors import ModelError
    from search.ml.registry import current_target

    cls = ClipEmbedder if spec.kind is ModelKind.CLIP else SentenceTransformerEmbedder
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
    return embedder


def _ignored_files(names: list[str]) -> list[str]:
    """IGNORED_FILES plus any *.bin beside a *.safetensors (same weights, older format)."""
    with_safetensors = {str(Path(name).parent) for name in names if name.endswith(".safetensors")}
    duplicates = [
        name
        for name in names
        if name.endswith(".bin") and str(Path(name).parent) in with_safetensors
    ]
    return IGNORED_FILES + duplicates


def _matches(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, pattern) for pattern in patterns)


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


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
