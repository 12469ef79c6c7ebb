"""Retrieval-augmented descriptions: the context, the prompt, the request and the generation.

A request creates a `Description` row (with its context already computed, so the page can show
it at once) and enqueues a background task; the worker streams the model's text into the row,
which the page polls. Identical requests reuse a finished description.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage

from search.index import IndexService, get_index_service
from search.models import Description, Image, SearchQuery
from search.selectors import image_file_path
from search.services.retrieval import Hit, embed_image, nearest_images
from search.services.search import SearchInputError

PROMPT_VERSION = "rag-v1"
FLUSH_EVERY_PIECES = 8  # write the growing text to the row every few pieces (words)...
FLUSH_EVERY_SECONDS = 0.5  # ...or this often, whichever comes first
MAX_ATTEMPTS = 2  # a stalled description is retried once, then marked failed

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


class DescriptionsDisabled(Exception):
    """TINYRAG_VLM_BACKEND is `none`."""


class NoSuchSubject(SearchInputError):
    """The image to describe is not one of the query's (or the query has no upload)."""


@dataclass(frozen=True)
class Candidate:
    wnid: str
    name: str
    synonyms: list[str]
    votes: int
    mean_score: float


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


def open_subject(query: SearchQuery, image: Image | None) -> PILImage.Image:
    """The pixels to describe: a dataset image, or the query's upload, as RGB."""
    if image is not None:
        with PILImage.open(image_file_path(image)) as img:
            return img.convert("RGB")
    from search.services.uploads import read_upload

    with query.uploaded_image.open("rb") as f:
        return read_upload(f.read())[0]


def _subject(query: SearchQuery, image_id: int | None) -> tuple[Image | None, str]:
    """Which image of this query to describe, and the key identical requests share."""
    if image_id is None:
        if not query.uploaded_image:
            raise NoSuchSubject("This query has no uploaded image; choose a result.")
        with query.uploaded_image.open("rb") as f:
            return None, f"upload:{hashlib.sha256(f.read()).hexdigest()}"
    allowed = set(query.results.values_list("image_id", flat=True)) | {query.source_image_id}
    if image_id not in allowed:
        raise NoSuchSubject(f"Image {image_id} is not among this query's images.")
    return Image.objects.select_related("dataset", "image_class").get(
        pk=image_id
    ), f"image:{image_id}"


def request_description(
    *,
    query: SearchQuery,
    image_id: int | None = None,
    context_mode: str = Description.Context.RETRIEVED,
    regenerate: bool = False,
) -> Description:
    """A description of one of the query's images: reused, in progress, or newly queued."""
    from search.ml.vlm import get_describer

    if context_mode not in Description.Context.values:
        raise SearchInputError(f"context must be one of {', '.join(Description.Context.values)}.")
    describer = get_describer()
    if describer is None:
        raise DescriptionsDisabled(
            "Descriptions are disabled on this server (TINYRAG_VLM_BACKEND=none)."
        )
    image, key = _subject(query, image_id)
    same = {
        "image_key": key,
        "context_mode": context_mode,
        "backend": describer.backend,
        "model": describer.model_id,
        "prompt_version": PROMPT_VERSION,
    }

    pending = query.descriptions.filter(
        **same, status__in=[Description.Status.QUEUED, Description.Status.RUNNING]
    ).first()
    if pending is not None:
        return pending  # a second click while it runs
    if not regenerate:
        visible = Description.objects.filter(**same, status=Description.Status.DONE)
        if image is None:  # an upload is private: only its owner's descriptions are reused
            visible = visible.filter(query__user=query.user)
        done = visible.order_by("-finished_at").first()
        if done is not None:
            return Description.objects.create(
                query=query,
                image=image,
                **same,
                context=done.context,
                prompt=done.prompt,
                status=Description.Status.DONE,
                text=done.text,
                tokens=done.tokens,
                time_to_first_token_ms=done.time_to_first_token_ms,
                tokens_per_second=done.tokens_per_second,
                reused_from=done,
                started_at=done.started_at,
                finished_at=timezone.now(),
            )

    context: dict = {}
    if context_mode == Description.Context.RETRIEVED:
        exclude = frozenset({image.pk}) if image is not None else frozenset()
        context = retrieved_context(
            open_subject(query, image), k=settings.TINYRAG_RAG_K, exclude_ids=exclude
        )
    with transaction.atomic():
        description = Description.objects.create(
            query=query,
            image=image,
            **same,
            context=context,
            prompt=build_prompt(context_mode, context),
        )
        transaction.on_commit(lambda: _enqueue(description.pk))
    return description


def _enqueue(description_id: int) -> None:
    from search.tasks import generate_description

    generate_description.enqueue(description_id)


def run_description(description_id: int) -> Description:
    """Generate the text into the row (the worker's side). Never raises for a model failure:
    the row ends `failed` with a readable error, and the worker goes on with other tasks."""
    from search.ml.errors import ModelError
    from search.ml.vlm import get_describer

    with transaction.atomic():
        description = (
            Description.objects.select_for_update(of=("self",))  # PostgreSQL: not the joins
            .select_related("query", "image__dataset")
            .get(pk=description_id)
        )
        if description.status != Description.Status.QUEUED:
            return description  # done meanwhile, or another worker has it
        description.status = Description.Status.RUNNING
        description.started_at = timezone.now()
        description.attempts += 1
        description.save(update_fields=["status", "started_at", "attempts", "updated_at"])

    rows = Description.objects.filter(pk=description_id)
    progress = _RowProgress(rows)
    try:
        describer = get_describer()
        if describer is None:
            raise DescriptionsDisabled("Descriptions were disabled before this one could run.")
        image = open_subject(description.query, description.image)
        described = describer.describe(
            image,
            description.prompt,
            max_new_tokens=settings.TINYRAG_VLM_MAX_NEW_TOKENS,
            min_new_tokens=settings.TINYRAG_VLM_MIN_NEW_TOKENS,
            on_piece=progress.add,
        )
        if not described.text:
            raise ValueError("The model produced no text.")
    except (ModelError, DescriptionsDisabled, OSError, RuntimeError, ValueError) as exc:
        rows.update(
            status=Description.Status.FAILED,
            error=_readable(exc),
            text=progress.text,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
        return Description.objects.get(pk=description_id)

    rows.update(
        status=Description.Status.DONE,
        text=described.text,
        tokens=described.tokens,
        **progress.timings(described.tokens),
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    return Description.objects.get(pk=description_id)


class _RowProgress:
    """Collects the pieces of a generation and writes them into the row now and then, so
    that a page polling it shows the text growing (and the stall check sees progress)."""

    def __init__(self, rows):
        self.rows = rows
        self.pieces: list[str] = []
        self.started = time.perf_counter()
        self.first_piece_at: float | None = None
        self._flushed, self._flushed_at = 0, self.started

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, piece: str) -> None:
        now = time.perf_counter()
        if self.first_piece_at is None:
            self.first_piece_at = now
        self.pieces.append(piece)
        if (
            len(self.pieces) - self._flushed >= FLUSH_EVERY_PIECES
            or now - self._flushed_at >= FLUSH_EVERY_SECONDS
        ):
            self.rows.update(text=self.text, updated_at=timezone.now())
            self._flushed, self._flushed_at = len(self.pieces), now

    def timings(self, tokens: int) -> dict:
        """Time to the first piece, and the decoding rate of the tokens after it."""
        finished = time.perf_counter()
        first = self.first_piece_at or finished
        decode_seconds = finished - first
        return {
            "time_to_first_token_ms": round((first - self.started) * 1000, 1),
            "tokens_per_second": round((tokens - 1) / decode_seconds, 2)
            if tokens > 1 and decode_seconds > 0
            else None,
        }


def _readable(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "out of memory" in text.lower():
        return f"The model ran out of memory: {text.splitlines()[0]}"
    return text.splitlines()[0][:500]


def recover_stalled(queryset=None) -> int:
    """Queued or running rows with no progress for TINYRAG_DESCRIPTION_STALL_SECONDS (a dead
    worker, a lost task): retried once, then failed. Returns how many were touched."""
    cutoff = timezone.now() - timedelta(seconds=settings.TINYRAG_DESCRIPTION_STALL_SECONDS)
    stalled = (queryset if queryset is not None else Description.objects).filter(
        status__in=[Description.Status.QUEUED, Description.Status.RUNNING], updated_at__lt=cutoff
    )
    touched = 0
    for description in stalled:
        touched += 1
        if description.attempts < MAX_ATTEMPTS:
            Description.objects.filter(pk=description.pk).update(
                status=Description.Status.QUEUED, updated_at=timezone.now()
            )
            _enqueue(description.pk)
        else:
            Description.objects.filter(pk=description.pk).update(
                status=Description.Status.FAILED,
                finished_at=timezone.now(),
                updated_at=timezone.now(),
                error=f"Generation stopped making progress (attempt {description.attempts} of "
                f"{MAX_ATTEMPTS}; the worker may have died). Regenerate to try again.",
            )
    return touched


def with_stall_check(description: Description) -> Description:
    """The row as a poll should see it: a stalled one is first retried or failed."""
    if not description.finished and recover_stalled(Description.objects.filter(pk=description.pk)):
        description.refresh_from_db()
    return description
