"""Text or image -> the nearest `Image` rows of the published index, with scores.

The search use cases (search.py: history, uploads, API) sit on top of these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from PIL import Image as PILImage

from search.catalog.models import Image
from search.index.service import IndexService, get_index_service
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
    scores, ids = index.search(
        vector.reshape(1, -1), k, exclude_ids=exclude_ids, allowed_ids=allowed_ids
    )
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]
    rows = Image.objects.select_related("image_class", "dataset").in_bulk([i for i, _ in pairs])
    # an id the database no longer has (image deleted since the build) is dropped, not an error
    hits = [(rows[i], s) for i, s in pairs if i in rows]
    return [Hit(rank, image, score) for rank, (image, score) in enumerate(hits, start=1)]


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


def search_text(text: str, *, k: int, index_name: str | None = None) -> list[Hit]:
    index = get_index_service(index_name)
    return nearest_images(embed_text(text, index).vector, k=k, index=index)


def search_image(
    image: PILImage.Image,
    *,
    k: int,
    index_name: str | None = None,
    exclude_ids: frozenset[int] = frozenset(),
) -> list[Hit]:
    index = get_index_service(index_name)
    return nearest_images(
        embed_image(image, index).vector, k=k, index=index, exclude_ids=exclude_ids
    )
