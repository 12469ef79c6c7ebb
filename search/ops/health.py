"""Readiness checks shared by /readyz (load balancers) and `manage.py doctor` (people)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

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
    from search.index.service import SearchIndexError, get_index_service

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
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends

    name = type(task_backends[DEFAULT_TASK_BACKEND_ALIAS]).__name__
    if name == "DatabaseBackend":
        from django_tasks_db.models import DBTaskResult

        try:
            waiting = DBTaskResult.objects.ready().count()
        except Exception as exc:  # noqa: BLE001
            return Check("tasks", False, f"{name}: {exc}")
        return Check("tasks", True, f"{name}: {waiting} waiting")
    return Check("tasks", True, name)


READINESS: list[Callable[[], Check]] = [check_database, check_index, check_tasks]


def readiness() -> list[Check]:
    return [check() for check in READINESS]


def warm_up(between: Callable[[], object] = lambda: None) -> None:
    """Load the index and the embedders now (a web worker's first search would otherwise wait
    seconds for them) and embed once, so lazy initialisation is done too. Whatever fails is
    logged and left for the pages to explain: the worker starts regardless. `between` runs
    after each step (gunicorn's heartbeat, so a slow disk does not get the worker killed)."""
    from PIL import Image

    from search.index.service import SearchIndexError, get_index_service
    from search.ml.errors import ModelError
    from search.ml.registry import get_clip_embedder, get_text_embedder

    steps = {
        "index": lambda: get_index_service().get(),
        "text model": lambda: get_text_embedder().embed_texts(["warm up"]),
        "image model": lambda: get_clip_embedder().embed_images([Image.new("RGB", (64, 64))]),
    }
    for name, step in steps.items():
        try:
            step()
        except (SearchIndexError, ModelError) as exc:
            logger.warning("warm-up: %s not ready: %s", name, exc)
        except Exception:  # noqa: BLE001 -- a bug or a broken machine; searches will say
            logger.exception("warm-up: %s failed", name)
        between()
