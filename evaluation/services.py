"""Evaluation runs: held-out queries through the product's own embed, search and describe paths.

One run measures any of four things against a published index and stores an `EvaluationRun`:

- image -> image: each sampled val image queries the index; a hit is a result of its class.
- text -> image: one query per class, `TINYRAG_TEXT_PROMPT` filled with the class name.
- zeroshot: each sampled val image against every class name's text embedding: top-1/top-5.
- rag: descriptions of a sample of val images, per context (the retrieved neighbours' labels, or
  the image only); LIR = share that name the true class; the context hit rate = share of
  retrieved contexts that contained it.

Honesty rules (the two leaks of the original TinyImageNet RAG report): a query image that is in
the index is excluded from its own results, and the run says how often that happened; an index
that holds images of the evaluated split is a warning on the run; the describer is never given
the true label (its prompt is the product's `build_prompt`, from the neighbours' labels, the
image itself left out of them). Queries are embedded and searched exactly as search embeds and
searches, but no `SearchQuery` rows are written: evaluation never shows up in a user's history.
"""

from __future__ import annotations

import functools
import io
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage
from tqdm import tqdm

from evaluation import metrics
from evaluation.models import EvaluationRun
from search.catalog.models import Dataset, Image, ImageClass
from search.catalog.selectors import image_file_path
from search.descriptions.models import Description
from search.errors import InvalidInput
from search.index.service import SearchIndexError, get_index_service
from search.ml.batches import ImageFile, pixel_batches
from search.ml.errors import ModelError

MODES = ("image", "text", "zeroshot", "rag")
RAG_CONTEXTS = tuple(Description.Context.values)  # ("retrieved", "none")
DEFAULT_KS = (1, 5, 10)
DEFAULT_RAG_SAMPLE = 50  # each sample is one VLM generation per context: minutes, not hours
ZEROSHOT_KS = (1, 5)
SEARCH_CHUNK = 1024  # query vectors per FAISS call: bounded memory for 10k queries x k ids
FAILURES_PER_CLASS = 4  # failed queries kept per class, shown as thumbnails on the run page
SEED_RANGE = (-(2**31), 2**31 - 1)  # EvaluationRun.seed: a 32-bit IntegerField
SAMPLE_MAX = 2**31 - 1  # EvaluationRun.sample_size: a PositiveIntegerField

Progress = Callable[..., tqdm]


class EvaluationError(InvalidInput):
    """The run cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class EvaluationConfig:
    """What to measure and how; stored on the run as its configuration."""

    mode: str = EvaluationRun.Mode.ALL
    index_name: str = ""  # empty: TINYRAG_INDEX_NAME
    split: str = Image.Split.VAL
    sample: int | None = None  # query images for image/zeroshot; None: the whole split
    rag_sample: int | None = None  # None: DEFAULT_RAG_SAMPLE (or `sample` when mode is rag)
    seed: int = 0
    ks: tuple[int, ...] = DEFAULT_KS
    rag_contexts: tuple[str, ...] = RAG_CONTEXTS
    batch_size: int = 64
    workers: int = 0  # DataLoader processes decoding query images (0: in this process)

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.mode == EvaluationRun.Mode.ALL else (self.mode,)

    @property
    def resolved_index_name(self) -> str:
        return self.index_name or settings.TINYRAG_INDEX_NAME

    @property
    def resolved_rag_sample(self) -> int:
        if self.rag_sample is not None:
            return self.rag_sample
        if self.mode == EvaluationRun.Mode.RAG and self.sample is not None:
            return self.sample
        return DEFAULT_RAG_SAMPLE

    def validated(self) -> EvaluationConfig:
        """This configuration, normalised (ks sorted, unique), or EvaluationError."""
        if self.mode not in EvaluationRun.Mode.values:
            raise EvaluationError(
                f"mode must be one of {', '.join(EvaluationRun.Mode.values)}; got {self.mode!r}"
            )
        if self.split not in Image.Split.values:
            raise EvaluationError(f"split must be one of {', '.join(Image.Split.values)}")
        check_ks(self.ks)
        for name, value in (("sample", self.sample), ("rag sample", self.rag_sample)):
            if value is not None and not 1 <= value <= SAMPLE_MAX:
                raise EvaluationError(
                    f"the {name} must be a positive number of images, at most {SAMPLE_MAX:,}"
                )
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise EvaluationError(
                f"the seed must be between {SEED_RANGE[0]:,} and {SEED_RANGE[1]:,}"
            )
        unknown = set(self.rag_contexts) - set(RAG_CONTEXTS)
        if not self.rag_contexts or unknown:
            raise EvaluationError(f"RAG contexts are {', '.join(RAG_CONTEXTS)}")
        if self.batch_size < 1:
            raise EvaluationError("the batch size must be positive")
        contexts = tuple(c for c in RAG_CONTEXTS if c in self.rag_contexts)
        return replace(
            self, ks=tuple(sorted(set(self.ks))), rag_contexts=contexts,
            workers=max(0, self.workers),
        )  # fmt: skip

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(ks=list(self.ks), rag_contexts=list(self.rag_contexts))
        data["index_name"] = self.resolved_index_name
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> EvaluationConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("ks", "rag_contexts"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def check_ks(ks: Sequence[int], *, given: str = "e.g. 1,5,10") -> None:
    """EvaluationError unless every cut-off k is one a search can return: 1 up to its own
    limit, TINYRAG_TOP_K_MAX."""
    limit = settings.TINYRAG_TOP_K_MAX
    if not ks or any(not 1 <= k <= limit for k in ks):
        raise EvaluationError(f"k values must be positive integers up to {limit}, {given}")


def parse_ks(text: str) -> tuple[int, ...]:
    """ "1,5,10" -> (1, 5, 10); EvaluationError for anything else."""
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EvaluationError(
            f"k values are comma-separated integers, e.g. 1,5,10; got {text!r}"
        ) from None
    check_ks(ks, given=f"got {text!r}")
    return tuple(sorted(set(ks)))


def stratified_sample(
    ids_by_class: Mapping[Hashable, Sequence[int]], n: int | None, seed: int
) -> list[int]:
    """At most n ids, spread over the classes as evenly as they allow, the same for a seed.

    Each class's ids and the order of the classes are shuffled by the seed, then ids are dealt
    round-robin: class counts differ by at most one (unless a class runs out), and which
    classes get the extra ones is itself seeded. None or n >= the total: every id.
    """
    rng = random.Random(seed)
    classes = sorted(ids_by_class, key=str)
    pools = {c: sorted(ids_by_class[c]) for c in classes}
    total = sum(len(p) for p in pools.values())
    if n is None or n >= total:
        return sorted(i for p in pools.values() for i in p)
    for c in classes:
        rng.shuffle(pools[c])
    rng.shuffle(classes)
    taken: list[int] = []
    depth = 0
    while len(taken) < n:
        for c in classes:
            if depth < len(pools[c]):
                taken.append(pools[c][depth])
                if len(taken) == n:
                    break
        depth += 1
    return sorted(taken)


# --- starting runs ----------------------------------------------------------------------------


def create_run(*, config: EvaluationConfig, user=None) -> EvaluationRun:
    config = config.validated()
    return EvaluationRun.objects.create(
        mode=config.mode,
        configuration=config.to_json(),
        index_name=config.resolved_index_name,
        seed=config.seed,
        created_by=user if user is not None and user.is_authenticated else None,
    )


def request_run(*, config: EvaluationConfig, user) -> EvaluationRun:
    """A queued run, executed by a background worker (the run page's form)."""
    with transaction.atomic():
        run = create_run(config=config, user=user)
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    from evaluation.tasks import run_evaluation

    run_evaluation.enqueue(run_id)


def evaluate(*, config: EvaluationConfig, user=None, console: bool = False) -> EvaluationRun:
    """Create a run and execute it here and now (the evaluate command; `console`: progress
    bars on stderr too)."""
    return execute_run(create_run(config=config, user=user).pk, console=console)


class RunProgress(tqdm):
    """A tqdm bar that records its step, count and total on the run's row (at most once a
    second) for the run page to show, and doubles as the run's heartbeat. Prints only with
    `console`."""

    monitor_interval = 0  # no monitor thread: every write happens on the run's own thread

    def __init__(self, *args, run_id: int, console: bool = False, **kwargs):
        self.run_id = run_id
        self.console = console
        kwargs.update(mininterval=1.0, file=sys.stderr if console else io.StringIO())
        super().__init__(*args, dynamic_ncols=console, **kwargs)

    def display(self, msg=None, pos=None):
        EvaluationRun.objects.filter(pk=self.run_id).update(
            progress={"step": self.desc, "done": self.n, "total": self.total},
            updated_at=timezone.now(),
        )
        return super().display(msg, pos) if self.console else True


def execute_run(run_id: int, *, console: bool = False) -> EvaluationRun:
    """Measure a queued run and store the outcome. A problem the operator can fix (no index, a
    model that cannot load, an empty split) ends the run `failed` with a readable error."""
    recover_stalled_runs()
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().get(pk=run_id)
        if run.status != EvaluationRun.Status.QUEUED:
            return run  # done meanwhile, or another worker has it
        run.status = EvaluationRun.Status.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at", "updated_at"])

    config = EvaluationConfig.from_json(run.configuration)
    evaluation = Evaluation(
        run, config, functools.partial(RunProgress, run_id=run.pk, console=console)
    )
    try:
        evaluation.measure()
    except (EvaluationError, SearchIndexError, ModelError, OSError) as exc:
        return _finish(run, evaluation, error=_readable(exc))
    except BaseException as exc:  # a bug: still never leave the run "running"
        _finish(run, evaluation, error=f"{type(exc).__name__}: {_readable(exc)}")
        raise
    return _finish(run, evaluation)


def recover_stalled_runs(queryset=None) -> int:
    """Running rows with no sign of life for TINYRAG_EVALUATION_STALL_SECONDS (the worker was
    killed or crashed mid-run) are failed, with what to do; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.TINYRAG_EVALUATION_STALL_SECONDS)
    return (
        (queryset if queryset is not None else EvaluationRun.objects)
        .filter(status=EvaluationRun.Status.RUNNING, updated_at__lt=cutoff)
        .update(
            status=EvaluationRun.Status.FAILED,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
            error="The run stopped making progress (its worker was stopped or crashed). "
            "Start it again.",
        )
    )


def with_stall_check(run: EvaluationRun) -> EvaluationRun:
    """The run as a poll should see it: a stalled one is failed first."""
    if not run.finished and recover_stalled_runs(EvaluationRun.objects.filter(pk=run.pk)):
        run.refresh_from_db()
    return run


def _finish(run: EvaluationRun, evaluation: Evaluation, *, error: str = "") -> EvaluationRun:
    run.status = EvaluationRun.Status.FAILED if error else EvaluationRun.Status.DONE
    run.progress = {}
    run.error = error
    run.finished_at = timezone.now()
    run.index_manifest = evaluation.manifest
    run.model_ids = evaluation.model_ids
    run.sample_size = evaluation.sample_size
    run.metrics = evaluation.metrics
    run.per_class = evaluation.per_class
    run.details = evaluation.details
    run.warnings = evaluation.warnings
    run.configuration = {**run.configuration, **evaluation.resolved}
    run.save()
    return run


def _readable(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


# --- measuring --------------------------------------------------------------------------------


@dataclass
class RankedResults:
    """One row per query: result ids and scores, best first (the query itself left out)."""

    ids: list[list[int]]
    scores: list[list[float]]


@dataclass
class Evaluation:
    """The work of one run; its fields become the run's columns."""

    run: EvaluationRun
    config: EvaluationConfig
    progress: Progress
    manifest: dict = field(default_factory=dict)
    model_ids: dict = field(default_factory=dict)
    sample_size: int | None = None
    metrics: dict = field(default_factory=dict)
    per_class: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    resolved: dict = field(default_factory=dict)

    def measure(self) -> None:
        from search.ml.registry import get_clip_embedder, get_text_embedder

        config = self.config
        self.index = get_index_service(config.resolved_index_name)
        manifest = self.index.manifest
        self.manifest = asdict(manifest)
        self.dataset = Dataset.objects.filter(name=manifest.dataset).first()
        if self.dataset is None:
            raise EvaluationError(
                f"index {manifest.name!r} was built from dataset {manifest.dataset!r}, which is "
                "not imported; import it or rebuild the index"
            )
        self.clip = get_clip_embedder()
        self.clip.load()
        self.index.check_model(self.clip.model_id, self.clip.dim)
        self.model_ids = {"clip": self.clip.model_id, "text": get_text_embedder().model_id}
        self.classes = {
            c.pk: c for c in ImageClass.objects.filter(dataset=self.dataset).order_by("wnid")
        }
        self._check_held_out()

        modes = list(config.modes)
        if "rag" in modes and config.mode == EvaluationRun.Mode.ALL and not _describer_enabled():
            modes.remove("rag")
            self.warnings.append(
                "rag skipped: descriptions are disabled (TINYRAG_VLM_BACKEND=none)"
            )
        self.resolved = {
            "modes": modes,
            "rag_sample": config.resolved_rag_sample if "rag" in modes else None,
            "rag_k": settings.TINYRAG_RAG_K if "rag" in modes else None,
            "text_prompt": settings.TINYRAG_TEXT_PROMPT,
        }
        if {"image", "zeroshot"} & set(modes):
            self._embed_sampled_queries()
        for mode in modes:
            getattr(self, f"measure_{mode}")()

    # -- the query pool ------------------------------------------------------------------------

    @functools.cached_property
    def pool(self) -> dict[int, tuple[int, str]]:
        """Labelled images of the evaluated split: id -> (class id, path)."""
        rows = Image.objects.filter(
            dataset=self.dataset, split=self.config.split, image_class__isnull=False
        ).values_list("id", "image_class_id", "path")
        pool = {i: (c, p) for i, c, p in rows.iterator(chunk_size=5000)}
        if not pool:
            raise EvaluationError(
                f"dataset {self.dataset.name!r} has no labelled {self.config.split} images to "
                "query with"
            )
        return pool

    def sample(self, n: int | None) -> list[int]:
        by_class: dict[int, list[int]] = defaultdict(list)
        for image_id, (class_id, _) in self.pool.items():
            by_class[class_id].append(image_id)
        return stratified_sample(by_class, n, self.config.seed)

    @functools.cached_property
    def index_ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.get().index.id_map).astype(np.int64)

    def _check_held_out(self) -> None:
        split = self.config.split
        in_index = np.isin(np.fromiter(self.pool, dtype=np.int64), self.index_ids)
        self.in_index = frozenset(np.fromiter(self.pool, dtype=np.int64)[in_index].tolist())
        if self.in_index:
            self.warnings.append(
                f"index {self.index.name!r} contains {len(self.in_index)} of the "
                f"{len(self.pool)} {split} images: they are not held out. Each query is "
                "excluded from its own results, but its near-duplicates and its class's other "
                f"{split} images still count. Build an index without --splits {split} for an "
                "honest measurement."
            )

    # -- embedding and searching ---------------------------------------------------------------

    def _embed_sampled_queries(self) -> None:
        """Embed the sampled query images as build_index embeds the collection."""
        sample = self.sample(self.config.sample)
        root = Path(self.dataset.root)
        items = [ImageFile(i, str(root / self.pool[i][1])) for i in sample]
        batches = pixel_batches(
            items, self.clip.image_preprocessor(),
            batch_size=self.config.batch_size, workers=self.config.workers,
        )  # fmt: skip
        ids, vectors, skipped = [], [], []
        with self.progress(total=len(items), desc="embed queries", unit="img") as bar:
            for batch in batches:
                if batch.pixels is not None:
                    ids.append(batch.ids)
                    vectors.append(self.clip.embed_pixel_batch(batch.pixels))
                skipped.extend(batch.errors)
                bar.update(len(batch))
        if skipped:
            self.warnings.append(
                f"{len(skipped)} query images could not be read and were left out, e.g. "
                f"{skipped[0]}"
            )
        if not ids:
            raise EvaluationError("none of the sampled query images could be read")
        self.query_ids = np.concatenate(ids)
        self.query_vectors = np.concatenate(vectors)
        self.query_classes = np.array([self.pool[int(i)][0] for i in self.query_ids])
        self.sample_size = len(self.query_ids)

    def search(self, vectors: np.ndarray, k: int, own_ids: Sequence[int] | None) -> RankedResults:
        """Top-k per row through the index service; row i never returns own_ids[i]."""
        drop_own = own_ids is not None and bool(self.in_index)
        ids_out: list[list[int]] = []
        scores_out: list[list[float]] = []
        chunks = range(0, len(vectors), SEARCH_CHUNK)
        with self.progress(total=len(vectors), desc="search", unit="query") as bar:
            for start in chunks:
                stop = min(start + SEARCH_CHUNK, len(vectors))
                # one extra result so that dropping the query itself still leaves k
                scores, ids = self.index.search(vectors[start:stop], k + int(drop_own))
                for row in range(stop - start):
                    own = int(own_ids[start + row]) if drop_own else None
                    pairs = [
                        (int(i), float(s))
                        for i, s in zip(ids[row], scores[row], strict=True)
                        if i != -1 and int(i) != own
                    ][:k]
                    ids_out.append([i for i, _ in pairs])
                    scores_out.append([s for _, s in pairs])
                bar.update(stop - start)
        return self._known(RankedResults(ids_out, scores_out))

    def _known(self, results: RankedResults) -> RankedResults:
        """Drop ids the database no longer has (deleted since the build), as search does."""
        wanted = {i for row in results.ids for i in row}
        rows = Image.objects.only("id", "image_class_id").in_bulk(list(wanted))
        self.result_classes = {i: img.image_class_id for i, img in rows.items()}
        keep_ids, keep_scores = [], []
        for ids, scores in zip(results.ids, results.scores, strict=True):
            pairs = [(i, s) for i, s in zip(ids, scores, strict=True) if i in rows]
            keep_ids.append([i for i, _ in pairs])
            keep_scores.append([s for _, s in pairs])
        return RankedResults(keep_ids, keep_scores)

    def relevance(self, results: RankedResults, true_classes: Sequence[int]) -> list[list[bool]]:
        return [
            [self.result_classes.get(i) == cls for i in ids]
            for ids, cls in zip(results.ids, true_classes, strict=True)
        ]

    @functools.cached_property
    def class_text_vectors(self) -> np.ndarray:
        """Every class name through search's own text path (prompt template, encoder check)."""
        from search.queries.retrieval import embed_text

        vectors = [
            embed_text(c.name, self.index).vector
            for c in self.progress(self.classes.values(), desc="embed class names", unit="class")
        ]
        return np.stack(vectors) if vectors else np.empty((0, self.clip.dim), np.float32)

    # -- the four measurements -----------------------------------------------------------------

    def measure_image(self) -> None:
        ks = self.config.ks
        results = self.search(self.query_vectors, max(ks), own_ids=self.query_ids)
        relevance = self.relevance(results, self.query_classes)
        summary = metrics.retrieval_summary(relevance, ks, results.scores)
        summary["self_excluded"] = sum(int(i) in self.in_index for i in self.query_ids)
        if summary["self_excluded"]:
            self.warnings.append(
                f"{summary['self_excluded']} query images were in the index and were excluded "
                "from their own results"
            )
        self.metrics["image"] = summary
        self.per_class["image"] = self._per_class_retrieval(
            self.query_ids.tolist(), self.query_classes.tolist(), results, relevance
        )

    def measure_text(self) -> None:
        ks = self.config.ks
        indexed = set(
            Image.objects.filter(dataset=self.dataset, split__in=self.index.manifest.splits)
            .values_list("image_class_id", flat=True)
            .distinct()
        )
        order = [pk for pk in self.classes if pk in indexed]
        if not order:
            raise EvaluationError(f"index {self.index.name!r} holds no labelled images")
        positions = {pk: n for n, pk in enumerate(self.classes)}
        vectors = self.class_text_vectors[[positions[pk] for pk in order]]
        results = self.search(vectors, max(ks), own_ids=None)
        relevance = self.relevance(results, order)
        self.metrics["text"] = metrics.retrieval_summary(relevance, ks, results.scores)
        self.per_class["text"] = self._per_class_retrieval(None, order, results, relevance)

    def measure_zeroshot(self) -> None:
        class_pks = list(self.classes)
        column = {pk: n for n, pk in enumerate(class_pks)}
        scores = self.query_vectors @ self.class_text_vectors.T
        ranks = [
            metrics.true_class_rank(row, column[cls])
            for row, cls in zip(scores, self.query_classes.tolist(), strict=True)
        ]
        summary: dict = {"queries": len(ranks), "classes": len(class_pks)}
        for k in ZEROSHOT_KS:
            summary[f"top{k}_accuracy"] = metrics.top_k_accuracy(ranks, k)
        self.metrics["zeroshot"] = summary

        by_class: dict[int, list[int]] = defaultdict(list)
        predicted: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for n, (cls, rank) in enumerate(zip(self.query_classes.tolist(), ranks, strict=True)):
            by_class[cls].append(rank)
            if rank > 1:
                predicted[cls].append(
                    (int(self.query_ids[n]), class_pks[int(np.argmax(scores[n]))])
                )
        rows = []
        for cls, class_ranks in by_class.items():
            row = self._class_row(cls, queries=len(class_ranks))
            for k in ZEROSHOT_KS:
                row[f"top{k}_accuracy"] = metrics.top_k_accuracy(class_ranks, k)
            row["failures"] = [
                {"image_id": image_id, **self._class_ref(guess, "predicted")}
                for image_id, guess in predicted[cls][:FAILURES_PER_CLASS]
            ]
            rows.append(row)
        self.per_class["zeroshot"] = sorted(rows, key=lambda r: r["wnid"])

    def measure_rag(self) -> None:
        from search.descriptions.services import PROMPT_VERSION, build_prompt
        from search.ml.vlm import GenerationError, get_describer

        describer = get_describer()
        if describer is None:
            raise EvaluationError(
                "rag needs a describer, but descriptions are disabled (TINYRAG_VLM_BACKEND=none)"
            )
        contexts = self.config.rag_contexts
        self.model_ids.update(vlm=describer.model_id, vlm_backend=describer.backend)
        self.resolved["prompt_version"] = PROMPT_VERSION
        sample = self.sample(self.config.resolved_rag_sample)
        if self.sample_size is None:
            self.sample_size = len(sample)
        images = Image.objects.select_related("dataset", "image_class").in_bulk(sample)

        records = []
        for image_id in self.progress(sample, desc="rag", unit="img"):
            image = images[image_id]
            with PILImage.open(image_file_path(image)) as img:
                pixels = img.convert("RGB")
            record: dict = {
                "image_id": image_id,
                "wnid": image.image_class.wnid,
                "name": image.image_class.name,
                "descriptions": {},
            }
            context: dict = {}
            if "retrieved" in contexts:
                context = self._rag_context(pixels, image_id)
                candidates = context["candidates"]
                record["candidates"] = [
                    {"wnid": c["wnid"], "name": c["name"], "votes": c["votes"]} for c in candidates
                ]
                record["neighbour_ids"] = [n["image_id"] for n in context["neighbours"]]
                record["context_hit"] = any(c["wnid"] == record["wnid"] for c in candidates)
            for mode in contexts:
                prompt = build_prompt(mode, context if mode == "retrieved" else {})
                try:
                    text = describer.describe(
                        pixels,
                        prompt,
                        max_new_tokens=settings.TINYRAG_VLM_MAX_NEW_TOKENS,
                        min_new_tokens=settings.TINYRAG_VLM_MIN_NEW_TOKENS,
                    ).text
                except GenerationError as exc:  # one failed generation is counted, not fatal
                    record["descriptions"][mode] = {"text": "", "named": None, "error": str(exc)}
                    continue
                named = metrics.names_class(
                    text, image.image_class.names or [image.image_class.name]
                )
                record["descriptions"][mode] = {"text": text, "named": named, "error": ""}
            records.append(record)

        summary: dict = {"samples": len(records), "rag_k": settings.TINYRAG_RAG_K, "contexts": {}}
        for mode in contexts:
            done = [
                r["descriptions"][mode] for r in records if not r["descriptions"][mode]["error"]
            ]
            errors = len(records) - len(done)
            if not done:
                first = next(r["descriptions"][mode]["error"] for r in records)
                raise EvaluationError(f"every {mode} generation failed, e.g.: {first}")
            if errors:
                self.warnings.append(f"{errors} of {len(records)} {mode} generations failed")
            summary["contexts"][mode] = {
                "lir": metrics.share(d["named"] for d in done),
                "named": sum(bool(d["named"]) for d in done),
                "generated": len(done),
                "errors": errors,
            }
        if "retrieved" in contexts:
            summary["context_hit_rate"] = metrics.share(r["context_hit"] for r in records)
            for hit, key in ((True, "lir_when_context_hit"), (False, "lir_when_context_missed")):
                summary[key] = metrics.share(
                    r["descriptions"]["retrieved"]["named"]
                    for r in records
                    if r["context_hit"] is hit and not r["descriptions"]["retrieved"]["error"]
                )
        self.metrics["rag"] = summary
        self.details["rag"] = records

    def _rag_context(self, pixels: PILImage.Image, image_id: int) -> dict:
        """The product's RAG context, the image left out of its own neighbours."""
        from search.descriptions import services as describe

        return describe.retrieved_context(
            pixels, k=settings.TINYRAG_RAG_K, exclude_ids=frozenset({image_id}), index=self.index
        )

    # -- per-class rows ------------------------------------------------------------------------

    def _class_ref(self, class_id: int | None, prefix: str) -> dict:
        cls = self.classes.get(class_id) if class_id is not None else None
        return {
            f"{prefix}_wnid": cls.wnid if cls else None,
            f"{prefix}_name": cls.name if cls else None,
        }

    def _class_row(self, class_id: int, **extra) -> dict:
        cls = self.classes[class_id]
        return {"wnid": cls.wnid, "name": cls.name, **extra}

    def _per_class_retrieval(
        self,
        query_ids: Sequence[int] | None,  # None: the queries are texts, not images
        true_classes: Sequence[int],
        results: RankedResults,
        relevance: list[list[bool]],
    ) -> list[dict]:
        groups: dict[int, list[int]] = defaultdict(list)
        for n, cls in enumerate(true_classes):
            groups[cls].append(n)
        rows = []
        for cls, members in groups.items():
            summary = metrics.retrieval_summary(
                [relevance[n] for n in members],
                self.config.ks,
                [results.scores[n] for n in members],
            )
            failures = []
            for n in members:
                if len(failures) < FAILURES_PER_CLASS and not metrics.hit_in_top_k(
                    relevance[n], 1, results.scores[n]
                ):
                    top = results.ids[n][0] if results.ids[n] else None
                    failures.append(
                        {
                            "image_id": int(query_ids[n]) if query_ids is not None else None,
                            "retrieved_id": top,
                            **self._class_ref(self.result_classes.get(top), "retrieved"),
                        }
                    )
            rows.append({**self._class_row(cls), **summary, "failures": failures})
        return sorted(rows, key=lambda r: r["wnid"])


def _describer_enabled() -> bool:
    return (settings.TINYRAG_VLM_BACKEND or "").strip().lower() != "none"
