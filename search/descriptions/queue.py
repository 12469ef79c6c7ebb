"""The description queue: one job kind of search.ops.jobs, served fairly across users.

- Tasks carry no row: each task's worker claims the next generation round-robin across users
  (fewest running first, then the one served longest ago), so one user's burst does not keep
  another's single request waiting behind all of it.
- A generation whose worker died (no progress for TINYRAG_DESCRIPTION_STALL_SECONDS) is
  queued again once, then failed.
- The database task backend can lose a task (a flushed queue, a restore): the queue keeps as
  many tasks waiting as it has generations queued.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q
from django.utils import timezone

from search.descriptions.models import Description
from search.ops import jobs

MAX_ATTEMPTS = 2  # a stalled description is retried once, then marked failed
LOST_TASK_GRACE_SECONDS = 10  # from a row's commit to its task's: a moment, not seconds
IN_FLIGHT = (Description.Status.QUEUED, Description.Status.RUNNING)


def _task():
    # here: the tasks module imports this one
    from search.descriptions.tasks import generate_description

    return generate_description


def enqueue() -> None:
    """One more task in the queue: it runs whichever generation is fairest when it starts."""
    _task().enqueue()


def replace_lost_tasks() -> None:
    """As many waiting tasks as queued generations (the database task backend; other
    backends keep their queue in a broker that does not lose tasks). A generation queued in
    the last LOST_TASK_GRACE_SECONDS may not have its task yet (it is enqueued once the
    row's transaction commits): only older ones are taken for lost."""
    waiting = jobs.waiting_tasks(_task().module_path)
    if waiting is None:
        return
    queued = Description.objects.filter(status=Description.Status.QUEUED, generates=True)
    grace = timezone.now() - timedelta(seconds=LOST_TASK_GRACE_SECONDS)
    for _ in range(min(queued.count() - waiting, queued.filter(updated_at__lt=grace).count())):
        enqueue()


DESCRIPTIONS = jobs.JobKind(
    model=Description,
    stall_seconds_setting="TINYRAG_DESCRIPTION_STALL_SECONDS",
    max_attempts=MAX_ATTEMPTS,
    stalled_error="Generation stopped making progress (attempt {attempts} of {max_attempts}; "
    "the worker may have died). Regenerate to try again.",
    scope=Q(generates=True),  # a row following another's generation is not a job
    on_requeue=lambda _pk: enqueue(),  # a task is a place in the fair queue, not a row's
    after_check=replace_lost_tasks,
)


def lock_user(user_id: int) -> None:
    """Within a transaction: the user's requests decide one at a time, in any web worker (a
    row lock on PostgreSQL; SQLite's transactions take the write lock when they begin)."""
    get_user_model().objects.select_for_update().filter(pk=user_id).first()


def generation_in_flight(shared: str) -> Description | None:
    """The generation queued or running for a generation key (at most one: a constraint)."""
    return Description.objects.filter(
        generation_key=shared, generates=True, status__in=IN_FLIGHT
    ).first()


def fair_order() -> list[int]:
    """Queued generations, the next to run first: each user's oldest, users with the fewest
    generations running first, then the one whose last generation started longest ago (or
    never), then the longest waiting request; a user's further requests after everyone's
    first."""
    queued = list(
        Description.objects.filter(status=Description.Status.QUEUED, generates=True)
        .order_by("created_at", "id")
        .values_list("pk", "query__user_id", "created_at")  # at most TINYRAG_DESCRIPTION_QUEUE_MAX
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
    Of two workers racing for a row, one wins (jobs.claim); the other tries the next."""
    for pk in fair_order():
        claimed = jobs.claim(DESCRIPTIONS, pk) and (
            Description.objects.select_related("query", "image__dataset").filter(pk=pk).first()
        )
        if claimed:  # (and not deleted a moment later)
            return claimed
    return None
