"""Background work, through Django's Tasks API (the django-tasks backport on Django 5.2).

The backend is a setting (TASKS): the database backend by default; `manage.py worker` runs it.
"""

from __future__ import annotations

from django_tasks import task

from search.descriptions.queue import DESCRIPTIONS, claim_next
from search.descriptions.services import run_description
from search.ops import jobs


@task()
def generate_description(description_id: int | None = None) -> str:
    """Write the next description's text into its row as the model generates it.

    A task is one place in the queue, not one row: it runs whichever generation is fairest
    now (search.descriptions.queue.fair_order). `description_id` is accepted, and ignored,
    for tasks enqueued before the queue was fair."""
    description = claim_next()
    # Rows a dead worker left behind get their retry from a live one. After the claim, so
    # that this task is no longer among the waiting ones when tasks are counted against rows.
    jobs.recover_stalled(DESCRIPTIONS)
    return run_description(description).status if description is not None else "idle"
