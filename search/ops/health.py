"""Readiness checks shared by /readyz (load balancers) and `manage.py doctor` (people)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from PIL import Image as PILImage

from search.catalog.selectors import collection_size
from search.index.service import SearchIndexError, get_index_service
from search.ml import registry
from search.ml.errors import ModelError
from search.ops.jobs import waiting_tasks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 -- any driver error means "not reachable"
        return Check("database", False, f"{connection.vendor}: {str(exc).strip() or exc!r}")
    return Check("database", True, connection.vendor)


def check_index() -> Check:
    """The index is loaded and was built with the configured CLIP model (ids compared; the
    dimension is checked at the first search, without loading a model here)."""
    try:
        service = get_index_service()
        manifest = service.get().manifest
    except SearchIndexError as exc:  # staff and doctor only: where the folder is, too
        return Check("index", False, f"{exc} (TINYRAG_INDEX_DIR={settings.TINYRAG_INDEX_DIR})")
    if manifest.model_id != settings.TINYRAG_CLIP_MODEL:
        return Check(
            "index",
            False,
            f"index {manifest.name!r} was built with {manifest.model_id}, but "
            f"TINYRAG_CLIP_MODEL is {settings.TINYRAG_CLIP_MODEL}; rebuild it",
        )
    return Check(
        "index",
        True,
        f"{manifest.name}: {manifest.count:,} vectors, {manifest.index_type}, {manifest.model_id}",
    )


def check_tasks() -> Check:
    """The task queue answers: for the database backend, how many tasks wait (the count the
    description queue keeps its tasks by); a broker's backend is named only."""
    name = type(task_backends[DEFAULT_TASK_BACKEND_ALIAS]).__name__
    try:
        waiting = waiting_tasks()
    except Exception as exc:  # noqa: BLE001 -- any database error means "not usable"
        return Check("tasks", False, f"{name}: {exc}")
    return Check("tasks", True, name if waiting is None else f"{name}: {waiting} waiting")


READINESS: list[Callable[[], Check]] = [check_database, check_index, check_tasks]


def readiness() -> list[Check]:
    return [check() for check in READINESS]


def warm_up(between: Callable[[], object] = lambda: None) -> None:
    """Load the index and the embedders now (a web worker's first search would otherwise wait
    seconds for them) and embed once, so lazy initialisation is done too. Whatever fails is
    logged and left for the pages to explain: the worker starts regardless. `between` runs
    after each step (gunicorn's heartbeat, so a slow disk does not get the worker killed)."""
    steps = {
        "index": lambda: get_index_service().get(),
        "text model": lambda: registry.get_text_embedder().embed_texts(["warm up"]),
        "image model": lambda: registry.get_clip_embedder().embed_images(
            [PILImage.new("RGB", (64, 64))]
        ),
    }
    for name, step in steps.items():
        try:
            step()
        except (SearchIndexError, ModelError) as exc:
            logger.warning("warm-up: %s not ready: %s", name, exc)
        except Exception:  # noqa: BLE001 -- a bug or a broken machine; searches will say
            logger.exception("warm-up: %s failed", name)
        between()


# --- what `manage.py doctor` adds to the readiness checks ----------------------------------


def check_dataset() -> Check:
    """Images are imported (doctor only: a server without them is up, just empty)."""
    size = collection_size()
    if not size.images:
        return Check("dataset", False, "no images imported; run: python manage.py bootstrap")
    return Check("dataset", True, f"{size.datasets} dataset(s), {size.images:,} images")


def check_clip() -> Check:
    """CLIP loads (doctor --load-models: seconds of work, so never for /readyz)."""
    try:
        embedder = registry.get_clip_embedder()
        embedder.load()
    except ModelError as exc:
        return Check("clip", False, str(exc))
    return Check("clip", True, f"{embedder.model_id} (dim {embedder.dim})")


def check_describer() -> Check:
    """Which description backend is configured (always ok: it is checked when it runs)."""
    if not registry.describer_enabled():
        return Check("descriptions", True, "disabled (TINYRAG_VLM_BACKEND=none)")
    backend = settings.TINYRAG_VLM_BACKEND
    where = settings.TINYRAG_VLM_URL if backend == "openai" else settings.TINYRAG_VLM_MODEL
    return Check("descriptions", True, f"{backend}: {where}")


def doctor_checks(*, load_models: bool = False) -> list[Check]:
    """The readiness checks, then the ones a person wants before trusting a server."""
    checks = [*readiness(), check_dataset()]
    if load_models:
        checks.append(check_clip())
    checks.append(check_describer())
    return checks
