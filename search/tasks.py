"""Background work, through Django's Tasks API (the django-tasks backport on Django 5.2).

The backend is a setting (TASKS): the database backend and `manage.py db_worker` by default.
"""

from __future__ import annotations

from django_tasks import task

from search.services.describe import recover_stalled, run_description


@task()
def generate_description(description_id: int) -> str:
    """Write a description's text into its row as the model generates it."""
    recover_stalled()  # rows a dead worker left behind get their retry from a live one
    return run_description(description_id).status
