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
from search.index.service import IndexService
from search.ml.registry import get_clip_embedder, get_text_embedder


@dataclass(frozen=True)
class Hit:
    rank: int  # 1-based
    image: Image
    score: float


@dataclass(frozen=True)
class QueryVector:
    vector: np.ndarray
    encoder: str  # the model that embedded the query


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
    """Whether this process has the query models (CLIP, and the text encoder when it is
    another) loaded already, so that a search loads none first. Read-only and cheap: before
    search.ml.clip is imported nothing can be loaded, and it imports no torch to say so."""
    if "search.ml.clip" not in sys.modules:
        return False
    return get_clip_embedder().loaded and get_text_embedder().loaded


def embed_text(text: str, index: IndexService) -> QueryVector:
    """CLIP's text tower with the prompt template, or the multilingual encoder as typed."""
    clip = get_clip_embedder()
    encoder = get_text_embedder()
    index.check_model(clip.model_id, encoder.dim)
    phrase = settings.TINYRAG_TEXT_PROMPT.format(query=text) if encoder is clip else text
    return QueryVector(encoder.embed_texts([phrase])[0], encoder.model_id)


def embed_image(image: PILImage.Image, index: IndexService) -> QueryVector:
    clip = get_clip_embedder()
    index.check_model(clip.model_id, clip.dim)
    return QueryVector(clip.embed_images([image])[0], clip.model_id)
