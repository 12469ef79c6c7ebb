"""Query vectors -> the nearest `Image` rows of an index, with scores; text or image -> a
query vector, embedded as the index was built.

The search use cases (search.queries.services: history, uploads, API), the descriptions'
retrieved context and the evaluation all search through these functions.

One query's embedding and search go through the process's micro-batchers
(search.queries.microbatch): queries that arrive together are embedded in one encoder call
per model (CLIP text phrases, the multilingual encoder's texts, CLIP images) and searched in
one index call per index, each row then cut to its own k and exclusions (what the index
call gives a row is what it gives the row alone). Class-filtered searches, and callers that
hold many queries already (the evaluation, `nearest_images_batch`), run directly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image as PILImage

from search.catalog.models import Image
from search.index.service import IndexMismatchError, IndexService, IndexType
from search.ml.names import display_model_id
from search.ml.registry import (
    get_clip_embedder,
    get_multilingual_embedder,
    get_translator,
    translator_loaded,
)
from search.queries.microbatch import batcher
from search.queries.routing import ReadQuery, Route, default_routes, read_query


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    image: Image
    score: float


@dataclass(frozen=True)
class QueryVector:
    vector: np.ndarray
    encoder: str  # the model that embedded the query
    read: ReadQuery | None = None  # how a text query was read; None for an image
    embedded_text: str = ""  # what the encoder got, before CLIP's prompt template
    translator: str = ""  # the model that translated it (the translate route)


def nearest_images(
    vector: np.ndarray,
    *,
    k: int,
    index: IndexService,
    exclude_ids: frozenset[int] = frozenset(),
    allowed_ids: np.ndarray | None = None,
) -> list[Hit]:
    """The top-k `Image` rows for one query vector, best first. Searched together with the
    queries that arrive with it, unless it is restricted to `allowed_ids` (a class filter)."""
    searches = batcher("search", _search_rows) if allowed_ids is None else None
    if searches is None:
        return nearest_images_batch(
            vector.reshape(1, -1),
            k=k,
            index=index,
            exclude_ids=exclude_ids,
            allowed_ids=allowed_ids,
        )[0]
    return _hits([searches.submit(SearchRow(index, vector, k, frozenset(exclude_ids)))])[0]


@dataclass(frozen=True)
class SearchRow:
    """One query vector's search, as the search batcher takes it."""

    index: IndexService
    vector: np.ndarray
    k: int
    exclude_ids: frozenset[int] = frozenset()


def _search_rows(rows: Sequence[SearchRow]) -> list[list[tuple[int, float]]]:
    """(id, score) pairs of each row, best first: one index call per group of rows that the
    same call answers as it would each alone, asking the group's largest k (plus exclusions),
    then each row cut to its own exclusions and k."""
    groups: dict[tuple, list[int]] = {}
    for n, row in enumerate(rows):
        groups.setdefault(_search_group(row), []).append(n)
    found: list[list[tuple[int, float]]] = [[] for _ in rows]
    for members in groups.values():
        index = rows[members[0]].index
        want = max(rows[n].k + len(rows[n].exclude_ids) for n in members)
        scores, ids = index.search(np.stack([rows[n].vector for n in members]), want)
        for j, n in enumerate(members):
            row = rows[n]
            found[n] = [
                (int(i), float(s))
                for i, s in zip(ids[j], scores[j], strict=True)
                if i != -1 and int(i) not in row.exclude_ids
            ][: row.k]
    return found


def _search_group(row: SearchRow) -> tuple:
    """Rows with the same key get, searched together, what each gets alone. An exact or IVF
    index's top k is a prefix of its top k + n; HNSW's breadth grows with k past efSearch
    (FAISS searches max(efSearch, k) candidates), so there k joins the key. An exact service
    searches an HNSW index as a flat one (`searched_as`)."""
    loaded = row.index.get()
    if loaded.searched_as != IndexType.HNSW:
        return (id(row.index),)
    ef_search = int(loaded.manifest.index_params.get("efSearch", 0))
    breadth = max(row.k + len(row.exclude_ids), ef_search)
    return (id(row.index), breadth)


def nearest_images_batch(
    vectors: np.ndarray,
    *,
    k: int,
    index: IndexService,
    exclude_ids: frozenset[int] = frozenset(),
    allowed_ids: np.ndarray | None = None,
    own_ids: Sequence[int] | None = None,
) -> list[list[Hit]]:
    """The top-k `Image` rows for each query vector (one row each), best first, in one index
    call and one database query. `exclude_ids` are left out of every row's results;
    `own_ids[i]`, when given, out of row i's only (a query image never finds itself)."""
    extra = 1 if own_ids is not None else 0  # one more, so that leaving out its own keeps k
    scores, ids = index.search(vectors, k + extra, exclude_ids=exclude_ids, allowed_ids=allowed_ids)
    rows = []
    for n in range(len(ids)):
        own = int(own_ids[n]) if own_ids is not None else None
        rows.append(
            [
                (int(i), float(s))
                for i, s in zip(ids[n], scores[n], strict=True)
                if i != -1 and int(i) != own
            ][:k]
        )
    return _hits(rows)


def _hits(rows: Sequence[Sequence[tuple[int, float]]]) -> list[list[Hit]]:
    """(id, score) rows -> `Hit` rows, with every row's images read in one query."""
    found = Image.objects.select_related("image_class", "dataset").in_bulk(
        list({i for row in rows for i, _ in row})
    )
    # an id the database no longer has (image deleted since the build) is dropped, not an error
    return [
        [
            Hit(rank, found[i], s)
            for rank, (i, s) in enumerate(((i, s) for i, s in row if i in found), start=1)
        ]
        for row in rows
    ]


def query_models_loaded() -> bool:
    """Whether this process has the models of the default text routes loaded already (CLIP,
    and the multilingual encoder or the translator that queries not in English take), so that
    a search loads none first. Read-only and cheap: before search.ml.clip is imported nothing
    can be loaded, and it imports no torch to say so."""
    if "search.ml.clip" not in sys.modules:
        return False
    routes = default_routes()
    if not get_clip_embedder().loaded:
        return False
    if Route.MULTILINGUAL in routes and not get_multilingual_embedder().loaded:
        return False
    return Route.TRANSLATE not in routes or translator_loaded()


def embed_text(
    text: str,
    index: IndexService,
    *,
    language: str | None = None,
    route: Route | str | None = None,
) -> QueryVector:
    """One query text, read (search.queries.routing) and embedded on its route: CLIP's text
    tower with the prompt template, the multilingual encoder, or translation then CLIP."""
    read = read_query(text, language=language, route=route)
    vectors, embedded, encoder, translator = _embed_read([read], index, batched=True)
    return QueryVector(vectors[0], encoder[0], read, embedded[0], translator[0])


def embed_texts(
    texts: Sequence[str],
    index: IndexService,
    *,
    language: str | None = None,
    route: Route | str | None = None,
) -> tuple[np.ndarray, list[ReadQuery]]:
    """Many query texts (the evaluation's), each read as embed_text reads it: (n, dim) rows in
    the order given, with one encoder call per route taken."""
    reads = [read_query(text, language=language, route=route) for text in texts]
    vectors, _, _, _ = _embed_read(reads, index)
    return vectors, reads


def _embed_read(
    reads: Sequence[ReadQuery], index: IndexService, *, batched: bool = False
) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Rows, embedded texts, encoders and translators of `reads`, one batch per route;
    `batched`: through the process's batchers, with the texts of other queries."""
    clip = get_clip_embedder()
    n = len(reads)
    embedded = [read.subject for read in reads]
    encoders = [clip.model_id] * n
    translators = [""] * n
    to_translate = [i for i, read in enumerate(reads) if read.route is Route.TRANSLATE]
    if to_translate:
        translator = get_translator()
        english = translator.translate([reads[i].subject for i in to_translate])
        for i, translated in zip(to_translate, english, strict=True):
            embedded[i] = translated
            translators[i] = translator.model_id
    multilingual = [i for i, read in enumerate(reads) if read.route is Route.MULTILINGUAL]
    through_clip = sorted(set(range(n)) - set(multilingual))
    vectors = np.empty((n, index.manifest.dim), dtype=np.float32)
    if through_clip:
        index.check_model(clip.model_id, clip.dim)
        prompt = settings.TINYRAG_TEXT_PROMPT
        phrases = [prompt.format(query=embedded[i]) for i in through_clip]
        vectors[through_clip] = _embedded(clip, phrases, "clip-text" if batched else None)
    if multilingual:
        encoder = get_multilingual_embedder()
        index.check_model(clip.model_id, index.manifest.dim)  # the index is CLIP's
        _check_text_encoder(encoder, index)
        texts = [embedded[i] for i in multilingual]
        vectors[multilingual] = _embedded(encoder, texts, "multilingual-text" if batched else None)
        for i in multilingual:
            encoders[i] = encoder.model_id
    return vectors, embedded, encoders, translators


def _embedded(encoder, texts: Sequence[str], batch_name: str | None) -> np.ndarray:
    """`encoder.embed_texts(texts)`, through the batcher `batch_name` when there is one."""
    texts_batcher = batcher(batch_name, _embed_texts) if batch_name else None
    if texts_batcher is None:
        return encoder.embed_texts(texts)
    return np.stack([texts_batcher.submit((encoder, text)) for text in texts])


def _embed_texts(items: Sequence[tuple[object, str]]) -> list[np.ndarray]:
    return _per_model(items, lambda encoder, texts: encoder.embed_texts(texts))


def _embed_images(items: Sequence[tuple[object, PILImage.Image]]) -> list[np.ndarray]:
    return _per_model(items, lambda clip, images: clip.embed_images(images))


def _per_model(items: Sequence[tuple[object, object]], embed) -> list[np.ndarray]:
    """One row per (model, input) item, in order, with one `embed(model, inputs)` call per
    model (a batch holds one model's items, unless the settings changed meanwhile)."""
    groups: dict[int, list[int]] = {}
    for n, (model, _input) in enumerate(items):
        groups.setdefault(id(model), []).append(n)
    rows: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(items)
    for members in groups.values():
        vectors = embed(items[members[0]][0], [items[n][1] for n in members])
        for n, vector in zip(members, vectors, strict=True):
            rows[n] = vector
    return rows


def _check_text_encoder(encoder, index: IndexService) -> None:
    """The multilingual encoder writes vectors of the index's size (one distilled into
    another CLIP's space would not, and searching with it would be noise)."""
    if encoder.dim != index.manifest.dim:
        raise IndexMismatchError(
            f"TINYRAG_TEXT_MODEL {display_model_id(encoder.model_id)} makes vectors of dim "
            f"{encoder.dim}, but index {index.name!r} holds dim {index.manifest.dim} "
            f"({display_model_id(index.manifest.model_id)}): set it to a text encoder "
            "distilled into that CLIP model's space, or empty for CLIP's own."
        )


def embed_image(image: PILImage.Image, index: IndexService) -> QueryVector:
    """One query image through CLIP's image tower, with the images that arrive with it."""
    clip = get_clip_embedder()
    index.check_model(clip.model_id, clip.dim)
    images = batcher("clip-image", _embed_images)
    if images is None:
        return QueryVector(clip.embed_images([image])[0], clip.model_id)
    return QueryVector(images.submit((clip, image)), clip.model_id)
