"""The RAG step of a description: the retrieved context, the prompt, and the generation.

The same functions serve the product and its measurement: a description request retrieves the
context (`retrieved_context`) and the worker generates from it (`generate`); the evaluation's
rag mode does both for held-out images, so LIR measures exactly what users are given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.conf import settings
from PIL import Image as PILImage

from search.catalog.models import Image
from search.catalog.selectors import image_file_path
from search.descriptions.models import Description
from search.index.service import IndexService, get_index_service
from search.ml.vlm.base import Describer
from search.queries.retrieval import Hit, embed_image, nearest_images

PROMPT_VERSION = "rag-v1"  # part of what identical requests share: bump it with the prompt

INSTRUCTION = (
    "Describe this image faithfully in two or three sentences: the main subject, its colours "
    "and the setting. Say only what you can see."
)
RAG_GUIDANCE = (
    "A visual search over a labelled photo collection found similar images in these categories "
    "(votes among the {k} nearest neighbours, mean similarity):\n{candidates}\n"
    "Name the most likely category only if the image itself supports it; if none fits, say "
    "what it looks like instead."
)
NO_CONTEXT_GUIDANCE = "Then say what the main object most likely is."


@dataclass(frozen=True)
class Candidate:
    wnid: str
    name: str
    synonyms: list[str]
    votes: int
    mean_score: float


@dataclass(frozen=True)
class Generation:
    """What the describer wrote."""

    text: str
    tokens: int


def open_image(image: Image) -> PILImage.Image:
    """A dataset image's pixels as the describer is given them: RGB."""
    with PILImage.open(image_file_path(image)) as img:
        return img.convert("RGB")


def aggregate_neighbours(hits: list[Hit]) -> list[Candidate]:
    """Neighbours' classes with votes and mean score: most votes first, then higher score."""
    by_class: dict[int, list[Hit]] = defaultdict(list)
    for hit in hits:
        if hit.image.image_class_id is not None:
            by_class[hit.image.image_class_id].append(hit)
    candidates = [
        Candidate(
            wnid=group[0].image.image_class.wnid,
            name=group[0].image.image_class.name,
            synonyms=list(group[0].image.image_class.names[1:]),
            votes=len(group),
            mean_score=round(sum(h.score for h in group) / len(group), 4),
        )
        for group in by_class.values()
    ]
    return sorted(candidates, key=lambda c: (-c.votes, -c.mean_score, c.name))


def build_prompt(context_mode: str, context: dict) -> str:
    if context_mode == Description.Context.NONE:
        return f"{INSTRUCTION} {NO_CONTEXT_GUIDANCE}"
    lines = []
    for n, c in enumerate(context["candidates"], start=1):
        also = f" (also: {', '.join(c['synonyms'])})" if c["synonyms"] else ""
        lines.append(
            f"{n}. {c['name']}{also}: {c['votes']} of {context['k']}, {c['mean_score']:.2f}"
        )
    return f"{INSTRUCTION}\n{RAG_GUIDANCE.format(k=context['k'], candidates=chr(10).join(lines))}"


def retrieved_context(
    image: PILImage.Image,
    *,
    k: int,
    exclude_ids: frozenset[int],
    index: IndexService | None = None,
) -> dict:
    """The labels of the image's k nearest indexed neighbours (the image itself left out), in
    the published index searches use unless another is given (evaluation picks its own)."""
    index = index or get_index_service()
    hits = nearest_images(
        embed_image(image, index).vector, k=k, index=index, exclude_ids=exclude_ids
    )
    return {
        "k": k,
        "index": index.manifest.name,
        "neighbours": [
            {
                "image_id": h.image.pk,
                "wnid": h.image.image_class.wnid if h.image.image_class else None,
                "score": round(h.score, 4),
            }
            for h in hits
        ],
        "candidates": [asdict(c) for c in aggregate_neighbours(hits)],
    }


def generate(
    image: PILImage.Image,
    *,
    prompt: str,
    describer: Describer,
    on_piece: Callable[[str], object] | None = None,
) -> Generation:
    """Describe the image from its prompt (build_prompt's), with the generation limits every
    description gets. Raises what the describer raises (ModelError and its GenerationError),
    after any pieces handed over."""
    described = describer.describe(
        image,
        prompt,
        max_new_tokens=settings.TINYRAG_VLM_MAX_NEW_TOKENS,
        min_new_tokens=settings.TINYRAG_VLM_MIN_NEW_TOKENS,
        on_piece=on_piece,
    )
    return Generation(described.text, described.tokens)
