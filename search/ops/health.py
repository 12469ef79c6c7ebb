"""Readiness checks shared by /readyz (load balancers) and `manage.py doctor` (people)."""

from __future__ import annotations

import logging
import sys
import time
from argparse import BooleanOptionalAction
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from huggingface_hub import try_to_load_from_cache
from PIL import Image as PILImage

from search.catalog.models import Image
from search.catalog.selectors import collection_size
from search.index.selectors import index_status
from search.index.service import SearchIndexError, get_index_service
from search.ml import registry
from search.ml.errors import ModelError
from search.ml.local import UnusableModelId, locate_model
from search.ml.query_models import (
    QueryModel,
    multilingual_needed,
    query_models,
    translator_needed,
)
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


# Any of these means "cannot be had now" and is said in one line; anything else is a bug or a
# broken machine and is logged with its traceback. Either way the process starts regardless.
NOT_READY = (SearchIndexError, ModelError, DatabaseError)


def warm_up_steps(*, web: bool = True, describer: bool = False) -> dict[str, Callable]:
    """What a warm-up loads, by name, in order. Always the published index (searched once, so
    its threads and kernels start too) and CLIP (an image and a text through it: CLIP's text
    tower loads with its images, and each tower's first call initialises lazily).

    `web` (the web tier): the text route's encoder and translator where queries take them, one
    text query along the path a search takes (the language detector, the class names it reads
    queries by, the micro-batchers' threads, the rows of its hits) short of writing history,
    and Django's map of URL names, which answers link by. `describer` (the worker): the
    description model when it runs in this process (TINYRAG_VLM_BACKEND=transformers; a
    served model has nothing to load)."""
    steps: dict[str, Callable] = {"index": _search_the_index_once, "image model": _embed_once}
    if web:
        if multilingual_needed():  # the route of queries not in English takes it
            steps["text model"] = lambda: registry.get_multilingual_embedder().embed_texts(["halo"])
        if translator_needed():
            steps["translation model"] = lambda: registry.get_translator().translate(["pemanasan"])
        steps["query path"] = _query_once
        steps["URL map"] = _map_the_urls
    if describer and registry.describes_in_process():
        steps["description model"] = lambda: registry.get_describer().load()
    return steps


def _search_the_index_once() -> None:
    import numpy as np  # here: the health checks are imported by the web tier too

    service = get_index_service()
    dim = service.get().manifest.dim
    service.search(np.full((1, dim), dim**-0.5, dtype=np.float32), 1)


def _embed_once() -> None:
    clip = registry.get_clip_embedder()
    clip.embed_images([PILImage.new("RGB", (64, 64))])
    clip.embed_texts(["a photo of a warm-up."])


def _query_once() -> None:
    # here: the search path imports torch and faiss, which the health checks must not
    from search.queries.retrieval import embed_text, nearest_images
    from search.queries.routing import detect_language

    # another script goes straight to the language detector (~0.4 s to build the first time)
    detect_language("ウォームアップ")
    index = get_index_service()
    nearest_images(embed_text("a photo", index).vector, k=1, index=index)


def _map_the_urls() -> None:
    """Django maps URL names lazily, once per language: ~15 ms of the first API answer."""
    from django.urls import reverse
    from django.utils import translation

    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            reverse("healthz")


def warm_up(
    between: Callable[[], object] = lambda: None, *, steps: dict | None = None
) -> list[str]:
    """Load the index and the models now (a web worker's first search would otherwise wait
    seconds for them) and use each once, so lazy initialisation is done too: `steps`, by
    default `warm_up_steps()`. Whatever fails is logged and left for the pages to explain: the
    process starts regardless. `between` runs after each step (gunicorn's heartbeat, so a slow
    disk does not get the worker killed). Returns the names of the steps that failed."""
    failed = []
    for name, step in (warm_up_steps() if steps is None else steps).items():
        try:
            step()
        except NOT_READY as exc:
            logger.warning("warm-up: %s not ready: %s", name, exc)
            failed.append(name)
        except Exception:  # noqa: BLE001 -- a bug or a broken machine; searches will say
            logger.exception("warm-up: %s failed", name)
            failed.append(name)
        between()
    return failed


def add_worker_warm_up_option(parser, *, batch_option: str) -> None:
    """The background workers' --warm-up/--no-warm-up (default None: the command decides, on
    unless it runs one batch, `batch_option`, or TINYRAG_WARM_UP=0)."""
    parser.add_argument(
        "--warm-up",
        action=BooleanOptionalAction,
        default=None,
        help="Load CLIP, the index and a local description model before the first task "
        f"(default: on, except with {batch_option}; TINYRAG_WARM_UP=0 turns it off).",
    )


def warm_up_and_say(
    say: Callable[[str], object],
    *,
    before: str,
    between: Callable[[], object] = lambda: None,
    web: bool = True,
    describer: bool = False,
) -> list[str]:
    """warm_up() of `warm_up_steps(web=, describer=)` between two lines handed to `say` (a
    command's stdout, a server's log): what it loads before `before` ("the first request"),
    then "ready in X s" or what is not ready. Returns the names of the steps that failed."""
    steps = warm_up_steps(web=web, describer=describer)
    say(f"warm-up: loading the {', '.join(steps)} before {before}")
    started = time.monotonic()
    failed = warm_up(between, steps=steps)
    seconds = time.monotonic() - started
    if failed:
        say(
            f"warm-up: finished in {seconds:.1f} s, but not ready: {', '.join(failed)} (see "
            "the messages above; each is tried again when first used)"
        )
    else:
        say(f"warm-up: ready in {seconds:.1f} s")
    return failed


# --- first run: what is missing before anyone can search ----------------------------------

# The steps in the order they must be done; each names what it makes and who asks for it.
SETUP_STEPS = ("dataset", "models", "index")
STEP_LABELS = {
    "dataset": gettext_lazy("Import the images"),
    "models": gettext_lazy("Download the search model"),
    "index": gettext_lazy("Build the search index"),
}
ASK_OPERATOR = {
    "dataset": gettext_lazy("Ask whoever runs this server to import the dataset."),
    "models": gettext_lazy("Ask whoever runs this server to download the search model."),
    "index": gettext_lazy("Ask whoever runs this server to build the search index."),
}
# What the `alternative` command does differently.
ALTERNATIVE_INTROS = {
    "dataset": gettext_lazy("Or, with tiny-imagenet-200.zip already downloaded (no download):"),
    "index": gettext_lazy("Or, to index every train image (slower):"),
}
QUICK_INDEX_PER_CLASS = 50  # train images per class of a first index: bootstrap's default too


@dataclass(frozen=True)
class ProgressItem:
    number: int
    name: str
    label: str
    state: str  # done | current | todo


@dataclass(frozen=True)
class SetupStep:
    """The first thing missing before search works (`first_missing_step`).

    `problem` is plain words for anyone; `command` (and `alternative`, another way to do the
    same) works as printed from the project folder; `detail` is for staff (paths, settings)."""

    name: str  # dataset | models | index
    problem: str
    command: str
    alternative: str = ""
    detail: str = ""
    done: tuple[str, ...] = ()  # the steps already done, in SETUP_STEPS order

    @property
    def ask(self) -> str:
        return ASK_OPERATOR[self.name]

    @property
    def alternative_intro(self) -> str:
        return ALTERNATIVE_INTROS.get(self.name, _("Or:"))

    @property
    def debug(self) -> bool:
        """Whether the server runs with development settings (commands shown to everyone)."""
        return bool(settings.DEBUG)

    @property
    def progress(self) -> list[ProgressItem]:
        return [
            ProgressItem(
                number,
                name,
                STEP_LABELS[name],
                "done" if name in self.done else "current" if name == self.name else "todo",
            )
            for number, name in enumerate(SETUP_STEPS, start=1)
        ]


def manage_command(arguments: str) -> str:
    """`manage.py <arguments>` as typed from the project folder with this process's Python:
    `.venv/bin/python manage.py ...` from the project's virtual environment, else `python`
    (a container's, or one on PATH)."""
    python = Path(sys.executable)
    try:
        shown = f"{python.relative_to(settings.BASE_DIR)}"
    except ValueError:
        shown = "python"
    return f"{shown} manage.py {arguments}"


def model_missing(model: QueryModel) -> str:
    """Why a query model cannot be loaded from disk ("" when it can): the filesystem lookups
    the wrappers make before loading (search.ml.local), without torch."""
    try:
        location = locate_model(model.model_id, bare_name_org=model.bare_name_org)
    except UnusableModelId as exc:
        return str(exc)
    if location.directory is not None:
        return ""
    cache_dir = settings.TINYRAG_MODEL_DIR or None
    try:
        cached = try_to_load_from_cache(location.repo_id, model.marker, cache_dir=cache_dir)
    except ValueError as exc:
        return str(exc)
    if isinstance(cached, str):
        return ""
    return f"not downloaded into {'TINYRAG_MODEL_DIR' if cache_dir else 'the Hugging Face cache'}"


def models_problem() -> str:
    """What is wrong with the models searches need ("" when all are on disk): CLIP, and the
    multilingual encoder or the translation model of the text route (search.ml.query_models)."""
    problems = [
        f"{model.setting}={model.model_id}: {why}"
        for model in query_models()
        if (why := model_missing(model))
    ]
    return "; ".join(problems)


def _index_problem() -> tuple[str, str]:
    """(plain problem, staff detail) of the published index; ("", "") when it is usable."""
    status = index_status()
    if status.manifest is None:
        if not (Path(settings.TINYRAG_INDEX_DIR) / settings.TINYRAG_INDEX_NAME).exists():
            return _("the search index has not been built yet."), status.problem
        return _("the search index cannot be read and must be built again."), status.problem
    if status.manifest.model_id != str(settings.TINYRAG_CLIP_MODEL):
        return (
            _("the search index was built with another model and must be built again."),
            f"index {status.manifest.name!r} was built with {status.manifest.model_id}, but "
            f"TINYRAG_CLIP_MODEL is {settings.TINYRAG_CLIP_MODEL}",
        )
    return "", ""


def first_missing_step() -> SetupStep | None:
    """The first step of the first run still to do, in order dataset imported -> models on
    disk -> index built, or None when search is ready. Cheap enough for every search page:
    one indexed query, a few file lookups, the manifest (no model, no faiss)."""
    dataset_done = Image.objects.exists()
    missing_models = models_problem()
    index_problem, index_detail = _index_problem()
    done = tuple(
        name
        for name, ok in zip(
            SETUP_STEPS, (dataset_done, not missing_models, not index_problem), strict=True
        )
        if ok
    )
    if not dataset_done:
        return SetupStep(
            name="dataset",
            problem=_("no images have been imported yet."),
            command=manage_command("bootstrap"),
            alternative=manage_command("bootstrap --archive ~/Downloads/tiny-imagenet-200.zip"),
            detail="bootstrap downloads TinyImageNet-200 (about 250 MB), imports it, downloads "
            "the search model and builds the index, skipping what is already done.",
            done=done,
        )
    if missing_models:
        return SetupStep(
            name="models",
            problem=_("the search model has not been downloaded yet."),
            command=manage_command("setup_models"),
            detail=missing_models,
            done=done,
        )
    if index_problem:
        return SetupStep(
            name="index",
            problem=index_problem,
            command=manage_command(f"build_index --limit-per-class {QUICK_INDEX_PER_CLASS}"),
            alternative=manage_command("build_index"),
            detail=f"{index_detail} (--limit-per-class {QUICK_INDEX_PER_CLASS}: a few minutes "
            "on a CPU)",
            done=done,
        )
    return None


# --- what `manage.py doctor` adds to the readiness checks ----------------------------------


def check_dataset() -> Check:
    """Images are imported (doctor only: a server without them is up, just empty)."""
    size = collection_size()
    if not size.images:
        return Check("dataset", False, f"no images imported; run: {manage_command('bootstrap')}")
    return Check("dataset", True, f"{size.datasets} dataset(s), {size.images:,} images")


def check_clip() -> Check:
    """CLIP loads (doctor --load-models: seconds of work, so never for /readyz)."""
    try:
        embedder = registry.get_clip_embedder()
        embedder.load()
    except ModelError as exc:
        return Check("clip", False, str(exc))
    return Check("clip", True, f"{embedder.model_id} (dim {embedder.dim})")


def check_text_routes() -> list[Check]:
    """The multilingual encoder and the translation model load, where the text route takes
    them (doctor --load-models), each with a query it embeds or translates."""
    checks = []
    if multilingual_needed():
        try:
            encoder = registry.get_multilingual_embedder()
            encoder.embed_texts(["kucing mesir"])
        except ModelError as exc:
            checks.append(Check("multilingual text model", False, str(exc)))
        else:
            checks.append(
                Check("multilingual text model", True, f"{encoder.model_id} (dim {encoder.dim})")
            )
    if translator_needed():
        try:
            translator = registry.get_translator()
            (english,) = translator.translate(["cari kucing mesir"])
        except ModelError as exc:
            checks.append(Check("translation model", False, str(exc)))
        else:
            checks.append(
                Check(
                    "translation model",
                    True,
                    f"{translator.model_id}: 'cari kucing mesir' -> {english!r}",
                )
            )
    return checks


def check_query_models_on_disk() -> Check:
    """Every model searches take is on disk (doctor, without loading them)."""
    problem = models_problem()
    names = ", ".join(f"{m.setting}={m.model_id}" for m in query_models())
    if problem:
        return Check("models", False, f"{problem}; run: {manage_command('setup_models')}")
    return Check("models", True, f"on disk: {names} (text route: {settings.TINYRAG_TEXT_ROUTE})")


def check_describer() -> Check:
    """Which description backend is configured (always ok: it is checked when it runs)."""
    if not registry.describer_enabled():
        return Check("descriptions", True, "disabled (TINYRAG_VLM_BACKEND=none)")
    backend = settings.TINYRAG_VLM_BACKEND
    where = settings.TINYRAG_VLM_URL if backend == "openai" else settings.TINYRAG_VLM_MODEL
    return Check("descriptions", True, f"{backend}: {where}")


def doctor_checks(*, load_models: bool = False) -> list[Check]:
    """The readiness checks, then the ones a person wants before trusting a server."""
    checks = [*readiness(), check_dataset(), check_query_models_on_disk()]
    if load_models:
        checks.append(check_clip())
        checks.extend(check_text_routes())
    checks.append(check_describer())
    return checks
