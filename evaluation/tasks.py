"""Background work of the evaluation app, through Django's Tasks API (the backend is the
TASKS setting, as for search/descriptions/tasks.py)."""

from __future__ import annotations

from django_tasks import task

from evaluation.services import execute_run


@task()
def run_evaluation(run_id: int) -> str:
    """Measure a queued evaluation run (started from the evaluation page) and store it."""
    return execute_run(run_id).status
