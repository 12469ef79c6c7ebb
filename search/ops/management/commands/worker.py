"""`manage.py worker`: the background worker that the configured task backend needs, so that
deploy/dev.sh, the Procfile and compose start one command whatever TINYRAG_TASKS_BACKEND is.

    manage.py worker              # db: `db_worker --no-reload`; rq: `rqworker`
    manage.py worker --batch      # run what is queued, then exit (rq: --burst)
    manage.py worker --no-warm-up # models load on first use (TINYRAG_WARM_UP=0 too)

Either worker loads the models its tasks use before the first one (db_worker.py, rqworker.py).
Another backend (a path in TINYRAG_TASKS_BACKEND) brings its own worker: this says so.
"""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django_tasks_db import DatabaseBackend

from search.ops.health import add_worker_warm_up_option
from search.ops.jobs import is_rq


class Command(BaseCommand):
    help = "Run the background worker of the configured task backend (db_worker or rqworker)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch",
            action="store_true",
            help="Run the tasks already queued, then exit.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="Database backend: seconds between polls of an empty queue (default 1).",
        )
        add_worker_warm_up_option(parser, batch_option="--batch")

    def handle(self, *, batch: bool, interval: float, warm_up: bool | None, **options):
        backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
        common = {"verbosity": options["verbosity"], "stdout": self.stdout, "stderr": self.stderr}
        if warm_up is not None:
            common["warm_up"] = warm_up
        if isinstance(backend, DatabaseBackend):
            flags = ["--no-reload", "--interval", str(interval)]
            if batch:  # the queue at once, without the worker's random start-up delay
                flags += ["--batch", "--no-startup-delay"]
            call_command("db_worker", *flags, **common)
        elif is_rq(backend):
            # with RQ's scheduler: a task to run later (a scheduled sync) waits in Redis for it
            call_command(
                "rqworker", *sorted(backend.queues), burst=batch, with_scheduler=True, **common
            )
        else:
            raise CommandError(
                f"{type(backend).__name__} (TINYRAG_TASKS_BACKEND) has no worker here: start "
                "the worker its documentation names."
            )
