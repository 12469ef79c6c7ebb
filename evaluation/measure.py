"""The measuring engine: held-out queries through the product's own embed, search and describe
paths, each measurement a function that returns its numbers.

One run measures any of four things against a published index:

- image -> image: each sampled val image queries the index; a hit is a result of its class.
- text -> image: one query per class, its name in the run's language, embedded as search
  embeds a query typed in that language (search.queries.routing: English through CLIP's
  text tower with `TINYRAG_TEXT_PROMPT`, Indonesian on its default route, or the route the
  run names, to compare them).
- zeroshot: each sampled val image against every class name's text embedding: top-1/top-5.
- rag: descriptions of a sample of val images in the run's language, per context (the
  retrieved neighbours' labels, or the image only); LIR = share that name the true class in
  that language (`metrics.names_class`); the context hit rate = share of retrieved contexts
  that contained it.

Honesty rules (the two leaks of the original TinyImageNet RAG report): a query image that is in
the index is excluded from its own results, and the run says how often that happened; an index
that holds images of the evaluated split is a warning on the run; the describer is never given
the true label (its prompt and context are the describe path's own, `search.descriptions.rag`,
from the neighbours' labels, the image itself left out of them). Queries are embedded and
searched through search's own functions (`search.queries.retrieval`), but no `SearchQuery`
rows are written: evaluation never shows up in a user's history.

The searches are exact unless the run asks otherwise (`EvaluationConfig.search`): a flat search
over the published index's own embeddings, whatever its type, so that the metrics describe the
embeddings and not an HNSW graph's approximation of them; `search="index"` searches the index as
served. The run's configuration records which (`search`, and `searched_index_type`).

`measure_run` yields each step's values (`Measured`) as it is done, and the run service stores
them: a run that fails half-way keeps what it measured before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings
from tqdm import tqdm

from evaluation import metrics
from evaluation.config import EXACT_SEARCH, ZEROSHOT_KS, EvaluationConfig, EvaluationError
from evaluation.models import EvaluationRun
from evaluation.sampling import stratified_sample
from evaluation.steps import Step
from search.catalog.models import Dataset, Image, ImageClass
from search.descriptions import rag
from search.descriptions.models import Description
from search.index.service import IndexService, get_index_service
from search.ml.batches import ImageFile, pixel_batches
from search.ml.clip import ClipEmbedder
from search.ml.registry import (
    describer_enabled,
    get_clip_embedder,
    get_describer,
    get_multilingual_embedder,
    get_translator,
)
from search.ml.vlm.base import Describer, GenerationError
from search.queries.retrieval import Hit, embed_texts, nearest_images_batch
from search.queries.routing import Route, default_route

SEARCH_CHUNK = 1024  # query vectors per index call: bounded memory for 10k queries x k ids
FAILURES_PER_CLASS = 4  # failed queries kept per class, shown as thumbnails on the run page

Progress = Callable[..., tqdm]


@dataclass(frozen=True)
class Measured:
    """What one step of a run found: the values of the run's columns it fills."""

    manifest: dict | None = None
    model_ids: dict = field(default_factory=dict)
    sample_size: int | None = None
    metrics: dict = field(default_factory=dict)  # mode -> summary
    per_class: dict = field(default_factory=dict)  # mode -> one row per class
    details: dict = field(default_factory=dict)  # mode -> records (rag: the descriptions)
    warnings: tuple[str, ...] = ()
    resolved: dict = field(default_factory=dict)  # configuration the run settled on


@dataclass(frozen=True)
class Bench:
    """What every measurement needs, fixed once a run has found its index and dataset."""

    config: EvaluationConfig
    index: IndexService
    dataset: Dataset
    clip: ClipEmbedder
    classes: dict[int, ImageClass]  # the dataset's, by wnid
    pool: dict[int, tuple[int, str]]  # labelled images of the split: id -> (class id, path)
    in_index: frozenset[int]  # images of the pool that the index holds (not held out)


@dataclass(frozen=True)
class Queries:
    """The sampled query images, embedded: ids, vectors and true classes, row by row."""

    ids: np.ndarray
    vectors: np.ndarray
    classes: np.ndarray
    unreadable: tuple[str, ...] = ()


def measure_run(config: EvaluationConfig, progress: Progress) -> Iterator[Measured]:
    """The run's measurements in order, each step's values as soon as it has them."""
    index = get_index_service(config.resolved_index_name, exact=config.search == EXACT_SEARCH)
    yield Measured(manifest=asdict(index.manifest))
    dataset = _dataset(index)
    clip = get_clip_embedder()
    clip.load()
    index.check_model(clip.model_id, clip.dim)
    yield Measured(model_ids={"clip": clip.model_id})

    pool = query_pool(dataset, config.split)
    bench = Bench(
        config=config,
        index=index,
        dataset=dataset,
        clip=clip,
        classes={c.pk: c for c in ImageClass.objects.filter(dataset=dataset).order_by("wnid")},
        pool=pool,
        in_index=held_in(pool, index),
    )
    modes = list(config.modes)
    warnings = held_out_warnings(bench)
    if "rag" in modes and config.mode == EvaluationRun.Mode.ALL and not describer_enabled():
        modes.remove("rag")
        warnings.append("rag skipped: descriptions are disabled (TINYRAG_VLM_BACKEND=none)")
    resolved = {
        "modes": modes,
        "rag_sample": config.resolved_rag_sample if "rag" in modes else None,
        "rag_k": settings.TINYRAG_RAG_K if "rag" in modes else None,
        "text_prompt": settings.TINYRAG_TEXT_PROMPT,
        "language": config.language,
        "search": config.search,
        "searched_index_type": index.get().searched_as,  # flat when exact, whatever is served
    }
    yield Measured(warnings=tuple(warnings), resolved=resolved)

    queries = None
    if {"image", "zeroshot"} & set(modes):
        queries = embed_queries(bench, progress)
        yield Measured(sample_size=len(queries.ids), warnings=queries.unreadable)
    text_vectors = None
    for mode in modes:
        if mode in ("text", "zeroshot") and text_vectors is None:
            text_vectors, route = class_text_vectors(bench, progress)
            yield Measured(model_ids=text_models(route), resolved={"text_route": route.value})
        if mode == "image":
            yield measure_image(bench, queries, progress)
        elif mode == "text":
            yield measure_text(bench, text_vectors, progress)
        elif mode == "zeroshot":
            yield measure_zeroshot(bench, queries, text_vectors)
        else:
            describer = rag_describer()
            sample = sample_ids(bench, config.resolved_rag_sample)
            yield Measured(
                model_ids={"vlm": describer.model_id, "vlm_backend": describer.backend},
                resolved={"prompt_version": rag.prompt_version(config.language)},
                sample_size=len(sample),  # the run's, unless query images came first
            )
            yield measure_rag(bench, sample, describer, progress)


# --- the bench ----------------------------------------------------------------------------------


def _dataset(index: IndexService) -> Dataset:
    manifest = index.manifest
    dataset = Dataset.objects.filter(name=manifest.dataset).first()
    if dataset is None:
        raise EvaluationError(
            f"index {manifest.name!r} was built from dataset {manifest.dataset!r}, which is "
            "not imported; import it or rebuild the index"
        )
    return dataset


def query_pool(dataset: Dataset, split: str) -> dict[int, tuple[int, str]]:
    """Labelled images of the evaluated split: id -> (class id, path)."""
    rows = Image.objects.filter(
        dataset=dataset, split=split, image_class__isnull=False
    ).values_list("id", "image_class_id", "path")
    pool = {i: (c, p) for i, c, p in rows.iterator(chunk_size=5000)}
    if not pool:
        raise EvaluationError(
            f"dataset {dataset.name!r} has no labelled {split} images to query with"
        )
    return pool


def held_in(pool: dict[int, tuple[int, str]], index: IndexService) -> frozenset[int]:
    """The images of the pool that the index holds."""
    index_ids = faiss.vector_to_array(index.get().index.id_map).astype(np.int64)
    ids = np.fromiter(pool, dtype=np.int64)
    return frozenset(ids[np.isin(ids, index_ids)].tolist())


def held_out_warnings(bench: Bench) -> list[str]:
    if not bench.in_index:
        return []
    split = bench.config.split
    return [
        f"index {bench.index.name!r} contains {len(bench.in_index)} of the "
        f"{len(bench.pool)} {split} images: they are not held out. Each query is "
        "excluded from its own results, but its near-duplicates and its class's other "
        f"{split} images still count. Build an index without --splits {split} for an "
        "honest measurement."
    ]


def sample_ids(bench: Bench, n: int | None) -> list[int]:
    """A stratified sample of the pool, by the run's seed."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for image_id, (class_id, _) in bench.pool.items():
        by_class[class_id].append(image_id)
    return stratified_sample(by_class, n, bench.config.seed)


def rag_describer() -> Describer:
    if not describer_enabled():
        raise EvaluationError(
            "rag needs a describer, but descriptions are disabled (TINYRAG_VLM_BACKEND=none)"
        )
    return get_describer()


# --- embedding and searching ----------------------------------------------------------------


def embed_queries(bench: Bench, progress: Progress) -> Queries:
    """Embed the sampled query images as build_index embeds the collection."""
    config = bench.config
    root = Path(bench.dataset.root)
    items = [ImageFile(i, str(root / bench.pool[i][1])) for i in sample_ids(bench, config.sample)]
    batches = pixel_batches(
        items, bench.clip.image_preprocessor(),
        batch_size=config.batch_size, workers=config.workers,
    )  # fmt: skip
    ids, vectors, skipped = [], [], []
    with progress(total=len(items), desc=Step.EMBED_IMAGES.value, unit="img") as bar:
        for batch in batches:
            if batch.pixels is not None:
                ids.append(batch.ids)
                vectors.append(bench.clip.embed_pixel_batch(batch.pixels))
            skipped.extend(batch.errors)
            bar.update(len(batch))
    if not ids:
        raise EvaluationError("none of the sampled query images could be read")
    query_ids = np.concatenate(ids)
    unreadable = (
        (f"{len(skipped)} query images could not be read and were left out, e.g. {skipped[0]}",)
        if skipped
        else ()
    )
    return Queries(
        ids=query_ids,
        vectors=np.concatenate(vectors),
        classes=np.array([bench.pool[int(i)][0] for i in query_ids]),
        unreadable=unreadable,
    )


def search(
    bench: Bench,
    vectors: np.ndarray,
    k: int,
    own_ids: Sequence[int] | None,
    progress: Progress,
    step: Step,
) -> list[list[Hit]]:
    """Top-k hits per row through the product's search; row i never returns own_ids[i]."""
    drop_own = own_ids is not None and bool(bench.in_index)
    hits: list[list[Hit]] = []
    with progress(total=len(vectors), desc=step.value, unit="query") as bar:
        for start in range(0, len(vectors), SEARCH_CHUNK):
            stop = min(start + SEARCH_CHUNK, len(vectors))
            hits += nearest_images_batch(
                vectors[start:stop],
                k=k,
                index=bench.index,
                own_ids=own_ids[start:stop] if drop_own else None,
            )
            bar.update(stop - start)
    return hits


def relevance(hits: list[list[Hit]], true_classes: Sequence[int]) -> list[list[bool]]:
    return [
        [h.image.image_class_id == cls for h in row]
        for row, cls in zip(hits, true_classes, strict=True)
    ]


def scores_of(hits: list[list[Hit]]) -> list[list[float]]:
    return [[h.score for h in row] for row in hits]


def class_text_vectors(bench: Bench, progress: Progress) -> tuple[np.ndarray, Route]:
    """Every class name in the run's language through search's own text path, as a query
    typed in that language (its route, the prompt template, the encoder checks), in batches;
    and the route they took (one: the language is given, so every name takes the same)."""
    config = bench.config
    names = [c.name_in(config.language) for c in bench.classes.values()]
    vectors = [np.empty((0, bench.index.manifest.dim), np.float32)]
    route = Route(config.text_route) if config.text_route else default_route(config.language)
    with progress(total=len(names), desc=Step.EMBED_CLASSES.value, unit="class") as bar:
        for start in range(0, len(names), config.batch_size):
            batch = names[start : start + config.batch_size]
            rows, reads = embed_texts(
                batch, bench.index, language=config.language, route=config.text_route
            )
            vectors.append(rows)
            route = reads[0].route
            bar.update(len(batch))
    return np.concatenate(vectors), route


def text_models(route: Route) -> dict[str, str]:
    """The models a text query on `route` goes through, by role (the run's model_ids)."""
    if route is Route.MULTILINGUAL:
        return {"text": get_multilingual_embedder().model_id}
    models = {"text": get_clip_embedder().model_id}
    if route is Route.TRANSLATE:
        models["translator"] = get_translator().model_id
    return models


# --- the four measurements ------------------------------------------------------------------


def measure_image(bench: Bench, queries: Queries, progress: Progress) -> Measured:
    ks = bench.config.ks
    hits = search(bench, queries.vectors, max(ks), queries.ids, progress, Step.SEARCH_IMAGES)
    relevant = relevance(hits, queries.classes)
    summary = metrics.retrieval_summary(relevant, ks, scores_of(hits))
    summary["self_excluded"] = sum(int(i) in bench.in_index for i in queries.ids)
    warnings = ()
    if summary["self_excluded"]:
        warnings = (
            f"{summary['self_excluded']} query images were in the index and were excluded "
            "from their own results",
        )
    rows = per_class_retrieval(
        bench, queries.ids.tolist(), queries.classes.tolist(), hits, relevant
    )
    return Measured(metrics={"image": summary}, per_class={"image": rows}, warnings=warnings)


def measure_text(bench: Bench, text_vectors: np.ndarray, progress: Progress) -> Measured:
    ks = bench.config.ks
    indexed = set(
        Image.objects.filter(dataset=bench.dataset, split__in=bench.index.manifest.splits)
        .values_list("image_class_id", flat=True)
        .distinct()
    )
    order = [pk for pk in bench.classes if pk in indexed]
    if not order:
        raise EvaluationError(f"index {bench.index.name!r} holds no labelled images")
    positions = {pk: n for n, pk in enumerate(bench.classes)}
    vectors = text_vectors[[positions[pk] for pk in order]]
    hits = search(bench, vectors, max(ks), None, progress, Step.SEARCH_CLASSES)
    relevant = relevance(hits, order)
    return Measured(
        metrics={"text": metrics.retrieval_summary(relevant, ks, scores_of(hits))},
        per_class={"text": per_class_retrieval(bench, None, order, hits, relevant)},
    )


def measure_zeroshot(bench: Bench, queries: Queries, text_vectors: np.ndarray) -> Measured:
    class_pks = list(bench.classes)
    column = {pk: n for n, pk in enumerate(class_pks)}
    scores = queries.vectors @ text_vectors.T
    true_classes = queries.classes.tolist()
    ranks = [
        metrics.true_class_rank(row, column[cls])
        for row, cls in zip(scores, true_classes, strict=True)
    ]
    summary: dict = {"queries": len(ranks), "classes": len(class_pks)}
    for k in ZEROSHOT_KS:
        summary[f"top{k}_accuracy"] = metrics.top_k_accuracy(ranks, k)

    by_class: dict[int, list[int]] = defaultdict(list)
    predicted: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for n, (cls, rank) in enumerate(zip(true_classes, ranks, strict=True)):
        by_class[cls].append(rank)
        if rank > 1:
            predicted[cls].append((int(queries.ids[n]), class_pks[int(np.argmax(scores[n]))]))
    rows = []
    for cls, class_ranks in by_class.items():
        row = class_row(bench, cls, queries=len(class_ranks))
        for k in ZEROSHOT_KS:
            row[f"top{k}_accuracy"] = metrics.top_k_accuracy(class_ranks, k)
        row["failures"] = [
            {"image_id": image_id, **class_ref(bench, guess, "predicted")}
            for image_id, guess in predicted[cls][:FAILURES_PER_CLASS]
        ]
        rows.append(row)
    return Measured(
        metrics={"zeroshot": summary},
        per_class={"zeroshot": sorted(rows, key=lambda r: r["wnid"])},
    )


def measure_rag(
    bench: Bench, sample: list[int], describer: Describer, progress: Progress
) -> Measured:
    """Describe each sampled image in each context through the describe path's own context,
    prompt and generation, in the run's language; LIR by `metrics.label_inclusion_rate`
    against the class's names in that language."""
    contexts = bench.config.rag_contexts
    language = bench.config.language
    images = Image.objects.select_related("dataset", "image_class").in_bulk(sample)
    names_by_class = {
        c.pk: c.names_in(language)
        for c in ImageClass.objects.filter(
            dataset__in={image.dataset_id for image in images.values()}
        )
    }
    records, synonyms, rivals = [], {}, {}
    for image_id in progress(sample, desc=Step.DESCRIBE.value, unit="img"):
        image = images[image_id]
        synonyms[image_id] = image.image_class.names_in(language)
        rivals[image_id] = metrics.rival_names(
            synonyms[image_id],
            (
                n
                for pk, names in names_by_class.items()
                if pk != image.image_class_id
                for n in names
            ),
        )
        pixels = rag.open_image(image)
        record: dict = {
            "image_id": image_id,
            "wnid": image.image_class.wnid,
            "name": synonyms[image_id][0],  # in the run's language, as the candidates
            "descriptions": {},
        }
        context: dict = {}
        if Description.Context.RETRIEVED in contexts:
            context = rag.retrieved_context(
                pixels,
                k=settings.TINYRAG_RAG_K,
                exclude_ids=frozenset({image_id}),  # never its own label
                index=bench.index,
                language=language,
            )
            candidates = context["candidates"]
            record["candidates"] = [
                {"wnid": c["wnid"], "name": c["name"], "votes": c["votes"]} for c in candidates
            ]
            record["neighbour_ids"] = [n["image_id"] for n in context["neighbours"]]
            record["context_hit"] = any(c["wnid"] == record["wnid"] for c in candidates)
        for mode in contexts:
            try:
                text = rag.generate(
                    pixels,
                    prompt=rag.build_prompt(
                        mode,
                        context if mode == Description.Context.RETRIEVED else {},
                        language=language,
                    ),
                    describer=describer,
                ).text
            except GenerationError as exc:  # one failed generation is counted, not fatal
                record["descriptions"][mode] = {"text": "", "named": None, "error": str(exc)}
                continue
            named = metrics.names_class(text, synonyms[image_id], language, rivals[image_id])
            record["descriptions"][mode] = {"text": text, "named": named, "error": ""}
        records.append(record)

    def lir(mode: str, rows: list[dict]) -> float | None:
        described = [r for r in rows if not r["descriptions"][mode]["error"]]
        return metrics.label_inclusion_rate(
            [r["descriptions"][mode]["text"] for r in described],
            [synonyms[r["image_id"]] for r in described],
            language,
            [rivals[r["image_id"]] for r in described],
        )

    summary: dict = {"samples": len(records), "rag_k": settings.TINYRAG_RAG_K, "contexts": {}}
    warnings = []
    for mode in contexts:
        done = [r["descriptions"][mode] for r in records if not r["descriptions"][mode]["error"]]
        errors = len(records) - len(done)
        if not done:
            first = next(r["descriptions"][mode]["error"] for r in records)
            raise EvaluationError(f"every {mode} generation failed, e.g.: {first}")
        if errors:
            warnings.append(f"{errors} of {len(records)} {mode} generations failed")
        summary["contexts"][mode] = {
            "lir": lir(mode, records),
            "named": sum(bool(d["named"]) for d in done),
            "generated": len(done),
            "errors": errors,
        }
    if Description.Context.RETRIEVED in contexts:
        summary["context_hit_rate"] = metrics.share(r["context_hit"] for r in records)
        for hit, key in ((True, "lir_when_context_hit"), (False, "lir_when_context_missed")):
            summary[key] = lir(
                Description.Context.RETRIEVED, [r for r in records if r["context_hit"] is hit]
            )
    return Measured(metrics={"rag": summary}, details={"rag": records}, warnings=tuple(warnings))


# --- per-class rows -------------------------------------------------------------------------


def class_ref(bench: Bench, class_id: int | None, prefix: str) -> dict:
    cls = bench.classes.get(class_id) if class_id is not None else None
    return {
        f"{prefix}_wnid": cls.wnid if cls else None,
        f"{prefix}_name": cls.name if cls else None,
    }


def class_row(bench: Bench, class_id: int, **extra) -> dict:
    cls = bench.classes[class_id]
    return {"wnid": cls.wnid, "name": cls.name, **extra}


def per_class_retrieval(
    bench: Bench,
    query_ids: Sequence[int] | None,  # None: the queries are texts, not images
    true_classes: Sequence[int],
    hits: list[list[Hit]],
    relevant: list[list[bool]],
) -> list[dict]:
    scores = scores_of(hits)
    groups: dict[int, list[int]] = defaultdict(list)
    for n, cls in enumerate(true_classes):
        groups[cls].append(n)
    rows = []
    for cls, members in groups.items():
        summary = metrics.retrieval_summary(
            [relevant[n] for n in members], bench.config.ks, [scores[n] for n in members]
        )
        failures = []
        for n in members:
            if len(failures) < FAILURES_PER_CLASS and not metrics.hit_in_top_k(
                relevant[n], 1, scores[n]
            ):
                top = hits[n][0].image if hits[n] else None
                failures.append(
                    {
                        "image_id": int(query_ids[n]) if query_ids is not None else None,
                        "retrieved_id": top.pk if top else None,
                        **class_ref(bench, top.image_class_id if top else None, "retrieved"),
                    }
                )
        rows.append({**class_row(bench, cls), **summary, "failures": failures})
    return sorted(rows, key=lambda r: r["wnid"])
