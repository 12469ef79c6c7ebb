"""Descriptions, the use cases: request one, read one as it should be seen, generate one.

A request creates a `Description` row (with its context already computed, so the page can show
it at once) and enqueues a background task; the worker streams the model's text into the row,
which the page polls. The RAG step (context, prompt, generation) is `rag`; the queue the rows
wait in (fair order, stall recovery, lost tasks) is `queue`, one job kind of search.ops.jobs.

The queue is fair and bounded:
- Identical requests (image, context, backend, model, language, prompt version; uploads only
  within their owner's) share one generation: a finished one is copied, one still queued or running
  is followed (the new row has `generates` off, `reused_from` = the generation, and catches
  up with it whenever it is read; if that row is deleted, the follower takes over). The
  database allows one generation in flight per key (a partial unique constraint), so
  concurrent identical requests cannot start two.
- A user may have TINYRAG_DESCRIPTION_PENDING_MAX generations queued or running; the next
  request is refused (DescriptionQueueFull: 429) instead of queueing behind them.
"""

from __future__ import annotations

import hashlib
import json
import time
from http import HTTPStatus

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from PIL import Image as PILImage

from search.catalog.models import Image
from search.descriptions import rag
from search.descriptions.models import Description
from search.descriptions.queue import (
    DESCRIPTIONS,
    IN_FLIGHT,
    enqueue,
    generation_in_flight,
    lock_user,
)
from search.errors import ApplicationError, NotFound, TooManyRequests
from search.languages import ENGLISH, PAGE_LANGUAGES
from search.ml.errors import ModelError
from search.ml.registry import describer_enabled, get_describer
from search.ops import jobs
from search.queries.models import SearchQuery
from search.queries.services import SearchInputError
from search.queries.uploads import read_upload

FLUSH_EVERY_PIECES = 8  # write the growing text to the row every few pieces (words)...
FLUSH_EVERY_SECONDS = 0.5  # ...or this often, whichever comes first
QUEUE_FULL_RETRY_SECONDS = 30  # about three generations on a CPU at today's speed


class DescriptionsDisabled(ApplicationError):
    """TINYRAG_VLM_BACKEND is `none`."""

    code = "disabled"
    status = HTTPStatus.CONFLICT
    for_users = gettext_lazy("Descriptions are turned off on this server.")


class NoSuchSubject(NotFound):
    """The image to describe is not one of the query's (or the query has no upload)."""


class GenerationCancelled(ApplicationError):
    """The row being generated was deleted (its query or user went): stop spending on it."""

    code = "cancelled"
    status = HTTPStatus.GONE


class DescriptionQueueFull(TooManyRequests):
    """The user already has TINYRAG_DESCRIPTION_PENDING_MAX generations queued or running."""

    retry_after = QUEUE_FULL_RETRY_SECONDS


def open_subject(query: SearchQuery, image: Image | None) -> PILImage.Image:
    """The pixels to describe: a dataset image, or the query's upload, as RGB."""
    if image is not None:
        return rag.open_image(image)
    with query.uploaded_image.open("rb") as f:
        return read_upload(f.read())[0]


def _subject(query: SearchQuery, image_id: int | None) -> tuple[Image | None, str]:
    """Which image of this query to describe, and the key identical requests share."""
    if image_id is None:
        if not query.uploaded_image:
            raise NoSuchSubject(_("This query has no uploaded image; choose a result."))
        with query.uploaded_image.open("rb") as f:
            return None, f"upload:{hashlib.sha256(f.read()).hexdigest()}"
    allowed = set(query.results.values_list("image_id", flat=True)) | {query.source_image_id}
    if image_id not in allowed:
        raise NoSuchSubject(_("Image %(id)s is not among this query's images.") % {"id": image_id})
    return Image.objects.select_related("dataset", "image_class").get(
        pk=image_id
    ), f"image:{image_id}"


def generation_key(same: dict, *, owner_id: int | None) -> str:
    """What identical requests share: the subject, context mode, model, language and prompt
    version, and for an upload its owner (an upload is private: never shared across users)."""
    parts = {**same, "owner": owner_id}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def request_description(
    *,
    query: SearchQuery,
    image_id: int | None = None,
    context_mode: str = Description.Context.RETRIEVED,
    language: str = ENGLISH,
    regenerate: bool = False,
) -> Description:
    """A description of one of the query's images in `language` (the reader's: a page
    language), reused only from one in the same language, following one in progress, or
    newly queued. Raises DescriptionQueueFull when the user has too many pending."""
    if context_mode not in Description.Context.values:
        raise SearchInputError(
            _("context must be one of %(choices)s.")
            % {"choices": ", ".join(Description.Context.values)}
        )
    if language not in PAGE_LANGUAGES:
        raise SearchInputError(
            _("language must be one of %(choices)s.") % {"choices": ", ".join(PAGE_LANGUAGES)}
        )
    if not describer_enabled():
        raise DescriptionsDisabled(
            _("Descriptions are disabled on this server (TINYRAG_VLM_BACKEND=none).")
        )
    describer = get_describer()
    image, key = _subject(query, image_id)
    same = {
        "image_key": key,
        "context_mode": context_mode,
        "backend": describer.backend,
        "model": describer.model_id,
        "language": language,
        "prompt_version": rag.prompt_version(language),
    }
    shared = generation_key(same, owner_id=query.user_id if image is None else None)

    context: dict | None = None if context_mode == Description.Context.RETRIEVED else {}
    while True:
        with transaction.atomic():
            lock_user(query.user_id)
            existing = _existing(query, image, same, shared, regenerate=regenerate)
            if existing is not None:
                return existing
            if context is not None:
                queued = _queue(query, image, same, shared, context)
                if queued is not None:
                    return queued
                continue  # an identical generation started and ended meanwhile: decide again
        # the context is a search: computed outside the lock, then decided again
        exclude = frozenset({image.pk}) if image is not None else frozenset()
        try:
            pixels = open_subject(query, image)
        except OSError:
            message = (
                _("The file of image %(id)s cannot be read.") % {"id": image.pk}
                if image is not None
                else _("The file of your upload cannot be read.")
            )
            raise SearchInputError(message) from None
        context = rag.retrieved_context(
            pixels, k=settings.TINYRAG_RAG_K, exclude_ids=exclude, language=language
        )


def _existing(
    query: SearchQuery, image: Image | None, same: dict, shared: str, *, regenerate: bool
) -> Description | None:
    """This query's row already on its way, a copy of an identical finished generation
    (unless regenerating), or a row following an identical one in flight; None: none."""
    pending = query.descriptions.filter(**same, status__in=IN_FLIGHT).first()
    if pending is not None:
        pending = with_stall_check(pending)  # a row following a generation catches up first
        if not pending.finished:
            return pending  # a second click while it runs
    if not regenerate:
        visible = Description.objects.filter(**same, status=Description.Status.DONE)
        if image is None:  # an upload is private: only its owner's descriptions are reused
            visible = visible.filter(query__user=query.user)
        done = visible.order_by("-finished_at").first()
        if done is not None:
            return _copy(query, image, same, shared, done)
    in_flight = generation_in_flight(shared)
    return _copy(query, image, same, shared, in_flight) if in_flight is not None else None


def _queue(
    query: SearchQuery, image: Image | None, same: dict, shared: str, context: dict
) -> Description | None:
    """A new generation, within the limits (called under the user's lock); None when an
    identical one was started and finished by someone else meanwhile."""
    _check_room(query.user_id)
    try:
        with transaction.atomic():
            description = Description.objects.create(
                query=query,
                image=image,
                **same,
                generation_key=shared,
                context=context,
                prompt=rag.build_prompt(same["context_mode"], context, language=same["language"]),
            )
    except IntegrityError:  # another user's identical request started it a moment ago
        in_flight = generation_in_flight(shared)
        return _copy(query, image, same, shared, in_flight) if in_flight is not None else None
    transaction.on_commit(enqueue)
    return description


def _check_room(user_id: int) -> None:
    """DescriptionQueueFull when the user has TINYRAG_DESCRIPTION_PENDING_MAX generations
    queued or running, or the whole queue holds TINYRAG_DESCRIPTION_QUEUE_MAX (many free
    accounts must not make everyone wait behind them)."""
    pending = Description.objects.filter(
        query__user=user_id, generates=True, status__in=IN_FLIGHT
    ).count()
    if pending >= settings.TINYRAG_DESCRIPTION_PENDING_MAX:
        raise DescriptionQueueFull(
            ngettext(
                "You already have %(n)s description waiting or being written; try again "
                "when it is done.",
                "You already have %(n)s descriptions waiting or being written; try again "
                "when one of them is done.",
                pending,
            )
            % {"n": pending}
        )
    queued = Description.objects.filter(generates=True, status=Description.Status.QUEUED)
    if queued.count() >= settings.TINYRAG_DESCRIPTION_QUEUE_MAX:
        raise DescriptionQueueFull(
            _("The server has more descriptions waiting than it can take; try again in a minute.")
        )


def _copy(
    query: SearchQuery, image: Image | None, same: dict, shared: str, source: Description
) -> Description:
    """A row of this query that shares `source`'s generation: a finished one's text, or, for
    one still in flight, its state now (the row catches up whenever it is read)."""
    row = Description(
        query=query,
        image=image,
        **same,
        generation_key=shared,
        generates=False,
        reused_from=source,
    )
    _take_state(row, source)
    row.save()
    return row


SHARED_STATE = (
    "context",
    "prompt",
    "status",
    "text",
    "tokens",
    "time_to_first_token_ms",
    "tokens_per_second",
    "error",
)  # not when it started or finished: another user's row says nothing of its owner


def _take_state(row: Description, source: Description) -> None:
    for name in SHARED_STATE:
        setattr(row, name, getattr(source, name))
    if row.finished and row.finished_at is None:
        row.finished_at = timezone.now()


def with_stall_check(description: Description) -> Description:
    """The row as a poll should see it: one that follows another's generation has caught up
    with it (or taken it over, if that row was deleted); a stalled generation is first
    retried or failed (jobs.with_stall_check)."""
    if description.finished:
        return description
    if not description.generates:
        source = description.reused_from
        if source is None:  # the generation it followed was deleted with its query
            source = generation_in_flight(description.generation_key)
            if source is None:
                return _take_over(description)
        source = with_stall_check(source)
        description.reused_from = source
        _take_state(description, source)
        description.save(update_fields=[*SHARED_STATE, "finished_at", "reused_from", "updated_at"])
        return description
    return jobs.with_stall_check(DESCRIPTIONS, description)


def _take_over(description: Description) -> Description:
    """A follower whose generation is gone generates itself, within its owner's limits (or
    follows whoever took over first)."""
    try:
        with transaction.atomic():
            owner = description.query.user_id
            lock_user(owner)
            _check_room(owner)
            Description.objects.filter(pk=description.pk).update(
                generates=True,
                status=Description.Status.QUEUED,
                text="",
                tokens=0,
                error="",
                attempts=0,
                started_at=None,
                updated_at=timezone.now(),
            )
            transaction.on_commit(enqueue)
    except IntegrityError:
        pass  # another follower took over a moment ago: follow it
    except DescriptionQueueFull as exc:
        Description.objects.filter(pk=description.pk).update(
            status=Description.Status.FAILED,
            error=f"The description it shared was deleted, and {exc}",
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    return with_stall_check(Description.objects.get(pk=description.pk))


# --- generating ------------------------------------------------------------------------------


def run_description(description: Description) -> Description:
    """Generate the text into a claimed (running) row, with the prompt it was queued with.
    Never raises for a model failure: the row ends `failed` with a readable error, and the
    worker goes on with other tasks."""
    description_id = description.pk
    progress = _RowProgress(description_id)
    try:
        if not describer_enabled():
            raise DescriptionsDisabled("Descriptions were disabled before this one could run.")
        generation = rag.generate(
            open_subject(description.query, description.image),
            prompt=description.prompt,  # the one built when it was requested, and shown
            describer=get_describer(),
            on_piece=progress.add,
        )
        if not generation.text.strip():  # a blank "done" card is no description
            raise ValueError("The model produced no text (nothing but white space).")
    except GenerationCancelled:
        return description  # nobody is left to read it
    except (ModelError, DescriptionsDisabled, OSError, RuntimeError, ValueError) as exc:
        jobs.finish(
            DESCRIPTIONS, description_id, error=jobs.readable_error(exc), text=progress.text
        )
        return Description.objects.get(pk=description_id)

    jobs.finish(
        DESCRIPTIONS,
        description_id,
        text=generation.text.strip(),
        tokens=generation.tokens,
        **progress.timings(generation.tokens),
    )
    return Description.objects.get(pk=description_id)


class _RowProgress:
    """Collects the pieces of a generation and writes them into the row now and then, so
    that a page polling it shows the text growing; each write is the job's heartbeat."""

    def __init__(self, description_id: int):
        self.description_id = description_id
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
            if not jobs.heartbeat(DESCRIPTIONS, self.description_id, text=self.text):
                raise GenerationCancelled("the description was deleted")
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
