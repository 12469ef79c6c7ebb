"""Query vectors -> the nearest `Image` rows of an index, with scores; text or image -> a
query vector, embedded as the index was built.

The search use cases (search.queries.services: history, uploads, API), the descriptions'
retrieved context and the evaluation all search through these functions.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image as PILImage

from search.catalog.models import Image
from search.index.service import IndexMismatchError, IndexService
from search.ml.names import display_model_id
from search.ml.registry import (
    get_clip_embedder,
    get_multilingual_embedder,
    get_translator,
    translator_loaded,
)
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
    """The top-k `Image` rows for one query vector, best first."""
    return nearest_images_batch(
        vector.reshape(1, -1), k=k, index=index, exclude_ids=exclude_ids, allowed_ids=allowed_ids
    )[0]


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
    vectors, embedded, encoder, translator = _embed_read([read], index)
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
    reads: Sequence[ReadQuery], index: IndexService
) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Rows, embedded texts, encoders and translators of `reads`, one batch per route."""
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
        vectors[through_clip] = clip.embed_texts(phrases)
    if multilingual:
        encoder = get_multilingual_embedder()
        index.check_model(clip.model_id, index.manifest.dim)  # the index is CLIP's
        _check_text_encoder(encoder, index)
        vectors[multilingual] = encoder.embed_texts([embedded[i] for i in multilingual])
        for i in multilingual:
            encoders[i] = encoder.model_id
    return vectors, embedded, encoders, translators


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
    clip = get_clip_embedder()
    index.check_model(clip.model_id, clip.dim)
    return QueryVector(clip.embed_images([image])[0], clip.model_id)
