"""Retrieval-augmented descriptions: the context, the prompt, the request and the generation.

A request creates a `Description` row (with its context already computed, so the page can show
it at once) and enqueues a background task; the worker streams the model's text into the row,
which the page polls.

The queue is fair and bounded:
- Identical requests (image, context, backend, model, prompt version; uploads only within
  their owner's) share one generation: a finished one is copied, one still queued or running
  is followed (the new row has `generates` off, `reused_from` = the generation, and catches
  up with it whenever it is read; if that row is deleted, the follower takes over). The
  database allows one generation in flight per key (a partial unique constraint), so
  concurrent identical requests cannot start two.
- A user may have TINYRAG_DESCRIPTION_PENDING_MAX generations queued or running; the next
  request is refused (DescriptionQueueFull: 429) instead of queueing behind them.
- Tasks carry no row: each task's worker claims the next generation round-robin across
  users (fewest running first, then the one served longest ago), so one user's burst does
  not keep another's single request waiting behind all of it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from http import HTTPStatus

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone
from PIL import Image as PILImage

from search.catalog.models import Image
from search.catalog.selectors import image_file_path
from search.descriptions.models import Description
from search.errors import ApplicationError, NotFound, TooManyRequests
from search.index.service import IndexService, get_index_service
from search.queries.models import SearchQuery
from search.queries.retrieval import Hit, embed_image, nearest_images
from search.queries.services import SearchInputError

PROMPT_VERSION = "rag-v1"
FLUSH_EVERY_PIECES = 8  # write the growing text to the row every few pieces (words)...
FLUSH_EVERY_SECONDS = 0.5  # ...or this often, whichever comes first
MAX_ATTEMPTS = 2  # a stalled description is retried once, then marked failed
QUEUE_FULL_RETRY_SECONDS = 30  # about three generations on a CPU at today's speed
LOST_TASK_GRACE_SECONDS = 10  # from a row's commit to its task's: a moment, not seconds
IN_FLIGHT = (Description.Status.QUEUED, Description.Status.RUNNING)

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


class DescriptionsDisabled(ApplicationError):
    """TINYRAG_VLM_BACKEND is `none`."""

    code = "disabled"
    status = HTTPStatus.CONFLICT


class NoSuchSubject(NotFound):
    """The image to describe is not one of the query's (or the query has no upload)."""


class GenerationCancelled(ApplicationError):
    """The row being generated was deleted (its query or user went): stop spending on it."""

    code = "cancelled"
    status = HTTPStatus.GONE


class DescriptionQueueFull(TooManyRequests):
    """The user already has TINYRAG_DESCRIPTION_PENDING_MAX generations queued or running."""

    retry_after = QUEUE_FULL_RETRY_SECONDS


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
    from search.queries.uploads import read_upload

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


def generation_key(same: dict, *, owner_id: int | None) -> str:
    """What identical requests share: the subject, context mode, model and prompt version,
    and for an upload its owner (an upload is private: never shared across users)."""
    parts = {**same, "owner": owner_id}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def request_description(
    *,
    query: SearchQuery,
    image_id: int | None = None,
    context_mode: str = Description.Context.RETRIEVED,
    regenerate: bool = False,
) -> Description:
    """A description of one of the query's images: reused, following one in progress, or
    newly queued. Raises DescriptionQueueFull when the user has too many pending."""
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
    shared = generation_key(same, owner_id=query.user_id if image is None else None)

    context: dict | None = None if context_mode == Description.Context.RETRIEVED else {}
    while True:
        with transaction.atomic():
            _lock_user(query.user_id)
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
            what = f"image {image.pk}" if image is not None else "your upload"
            raise SearchInputError(f"The file of {what} cannot be read.") from None
        context = retrieved_context(pixels, k=settings.TINYRAG_RAG_K, exclude_ids=exclude)


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
    in_flight = _generation_in_flight(shared)
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
                prompt=build_prompt(same["context_mode"], context),
            )
    except IntegrityError:  # another user's identical request started it a moment ago
        in_flight = _generation_in_flight(shared)
        return _copy(query, image, same, shared, in_flight) if in_flight is not None else None
    transaction.on_commit(_enqueue)
    return description


def _lock_user(user_id: int) -> None:
    """Within a transaction: the user's requests decide one at a time, in any web worker (a
    row lock on PostgreSQL; SQLite's transactions take the write lock when they begin)."""
    get_user_model().objects.select_for_update().filter(pk=user_id).first()


def _check_room(user_id: int) -> None:
    """DescriptionQueueFull when the user has TINYRAG_DESCRIPTION_PENDING_MAX generations
    queued or running, or the whole queue holds TINYRAG_DESCRIPTION_QUEUE_MAX (many free
    accounts must not make everyone wait behind them)."""
    pending = Description.objects.filter(
        query__user=user_id, generates=True, status__in=IN_FLIGHT
    ).count()
    if pending >= settings.TINYRAG_DESCRIPTION_PENDING_MAX:
        raise DescriptionQueueFull(
            f"You already have {pending} descriptions waiting or being written; try again "
            "when one of them is done."
        )
    queued = Description.objects.filter(generates=True, status=Description.Status.QUEUED)
    if queued.count() >= settings.TINYRAG_DESCRIPTION_QUEUE_MAX:
        raise DescriptionQueueFull(
            "The server has more descriptions waiting than it can take; try again in a minute."
        )


def _generation_in_flight(shared: str) -> Description | None:
    return Description.objects.filter(
        generation_key=shared, generates=True, status__in=IN_FLIGHT
    ).first()


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


def _enqueue() -> None:
    from search.descriptions.tasks import generate_description

    generate_description.enqueue()


def fair_order() -> list[int]:
    """Queued generations, the next to run first: each user's oldest, users with the fewest
    generations running first, then the one whose last generation started longest ago (or
    never), then the longest waiting request; a user's further requests after everyone's
    first."""
    queued = list(
        Description.objects.filter(status=Description.Status.QUEUED, generates=True)
        .order_by("created_at", "id")
        .values_list("pk", "query__user_id", "created_at")  # at most QUEUE_MAX (_check_room)
    )
    users = {user_id for _, user_id, _ in queued}
    stats = {
        row["query__user"]: row
        for row in Description.objects.filter(generates=True, query__user__in=users)
        .values("query__user")
        .annotate(
            running=Count("pk", filter=Q(status=Description.Status.RUNNING)),
            last_started=Max("started_at"),
        )
    }
    earliest = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    turn: dict[int, int] = defaultdict(int)  # the rank of each row among its user's
    ranked = []
    for pk, user_id, created in queued:
        user = stats.get(user_id, {})
        ranked.append(
            (
                turn[user_id],
                user.get("running", 0),
                user.get("last_started") or earliest,
                created,
                pk,
            )
        )
        turn[user_id] += 1
    return [entry[-1] for entry in sorted(ranked)]


def claim_next() -> Description | None:
    """Mark the fairest queued generation running and return it; None when none is queued.
    The claim is one conditional UPDATE: of two workers racing for a row, one wins."""
    for pk in fair_order():
        claimed = Description.objects.filter(pk=pk, status=Description.Status.QUEUED).update(
            status=Description.Status.RUNNING,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
            updated_at=timezone.now(),
        )
        claimed = claimed and (
            Description.objects.select_related("query", "image__dataset").filter(pk=pk).first()
        )
        if claimed:  # (and not deleted a moment later)
            return claimed
    return None


def run_description(description: Description) -> Description:
    """Generate the text into a claimed (running) row. Never raises for a model failure:
    the row ends `failed` with a readable error, and the worker goes on with other tasks."""
    from search.ml.errors import ModelError
    from search.ml.vlm import get_describer

    description_id = description.pk
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
    except GenerationCancelled:
        return description  # nobody is left to read it
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
            if not self.rows.update(text=self.text, updated_at=timezone.now()):
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


def _readable(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "out of memory" in text.lower():
        return f"The model ran out of memory: {text.splitlines()[0]}"
    return text.splitlines()[0][:500]


def recover_stalled(queryset=None) -> int:
    """Generations a dead worker left `running` with no progress for
    TINYRAG_DESCRIPTION_STALL_SECONDS: queued again once, then failed; and tasks for queued
    generations whose task was lost. A queued generation is never stalled by waiting: it is
    not bound to a task, and the queue holds one task per queued generation. Returns how
    many generations were touched."""
    cutoff = timezone.now() - timedelta(seconds=settings.TINYRAG_DESCRIPTION_STALL_SECONDS)
    stalled = (queryset if queryset is not None else Description.objects).filter(
        status=Description.Status.RUNNING, generates=True, updated_at__lt=cutoff
    )
    touched = 0
    for description in stalled:
        touched += 1
        if description.attempts < MAX_ATTEMPTS:
            requeued = Description.objects.filter(
                pk=description.pk, status=Description.Status.RUNNING
            ).update(status=Description.Status.QUEUED, updated_at=timezone.now())
            if requeued:
                _enqueue()
        else:
            Description.objects.filter(pk=description.pk).update(
                status=Description.Status.FAILED,
                finished_at=timezone.now(),
                updated_at=timezone.now(),
                error=f"Generation stopped making progress (attempt {description.attempts} of "
                f"{MAX_ATTEMPTS}; the worker may have died). Regenerate to try again.",
            )
    _replace_lost_tasks()
    return touched


def _replace_lost_tasks() -> None:
    """As many waiting tasks as queued generations (the database task backend; other
    backends keep their queue in a broker that does not lose tasks). A generation queued in
    the last LOST_TASK_GRACE_SECONDS may not have its task yet (it is enqueued once the
    row's transaction commits): only older ones are taken for lost."""
    waiting = _waiting_tasks()
    if waiting is None:
        return
    queued = Description.objects.filter(status=Description.Status.QUEUED, generates=True)
    grace = timezone.now() - timedelta(seconds=LOST_TASK_GRACE_SECONDS)
    for _ in range(min(queued.count() - waiting, queued.filter(updated_at__lt=grace).count())):
        _enqueue()


def _waiting_tasks() -> int | None:
    from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
    from django_tasks_db import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    from search.descriptions.tasks import generate_description

    if not isinstance(task_backends[DEFAULT_TASK_BACKEND_ALIAS], DatabaseBackend):
        return None

    return DBTaskResult.objects.ready().filter(task_path=generate_description.module_path).count()


def with_stall_check(description: Description) -> Description:
    """The row as a poll should see it: one that follows another's generation has caught up
    with it (or taken it over, if that row was deleted); a stalled generation is first
    retried or failed."""
    if description.finished:
        return description
    if not description.generates:
        source = description.reused_from
        if source is None:  # the generation it followed was deleted with its query
            source = _generation_in_flight(description.generation_key)
            if source is None:
                return _take_over(description)
        source = with_stall_check(source)
        description.reused_from = source
        _take_state(description, source)
        description.save(update_fields=[*SHARED_STATE, "finished_at", "reused_from", "updated_at"])
        return description
    if recover_stalled(Description.objects.filter(pk=description.pk)):
        description.refresh_from_db()
    return description


def _take_over(description: Description) -> Description:
    """A follower whose generation is gone generates itself, within its owner's limits (or
    follows whoever took over first)."""
    try:
        with transaction.atomic():
            owner = description.query.user_id
            _lock_user(owner)
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
            transaction.on_commit(_enqueue)
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
