"""`manage.py rqworker`: django-rq's worker, which loads the models its tasks use before it
takes the first one (as `db_worker` does), for TINYRAG_TASKS_BACKEND=rq.

    manage.py rqworker                 # the `default` queue, as documented by django-rq
    manage.py rqworker --burst         # until the queue is empty, then exit
    manage.py rqworker --no-warm-up    # models load on first use (TINYRAG_WARM_UP=0 too)

The settings choose django-tasks-rq's Job class and RQ's SimpleWorker (tinyrag_site/settings.py
RQ): each job runs in this process, where the warm-up loaded CLIP, the index and a local
description model. RQ's default Worker forks a child per job, which would load them again for
every description. A --burst run warms nothing unless asked: it loads what its tasks use.

This app comes before django_rq in INSTALLED_APPS, which is how its command name wins.
"""

from __future__ import annotations

import os

from django.apps import apps
from django.core.management.base import CommandError
from django_rq.management.commands import rqworker

from search.ops.health import add_worker_warm_up_option, warm_up_and_say


class Command(rqworker.Command):
    help = (
        "Run an RQ worker (django-rq's) for the RQ task backend; loads the models its tasks "
        "use before the first one."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        add_worker_warm_up_option(parser, batch_option="--burst")

    def handle(self, *args, warm_up: bool | None, **options):
        if not apps.is_installed("django_rq"):
            raise CommandError(
                "rqworker serves the RQ task backend: set TINYRAG_TASKS_BACKEND=rq and "
                "TINYRAG_REDIS_URL (the database backend's worker is `manage.py db_worker`)."
            )
        if warm_up is None:
            warm_up = not options["burst"] and os.environ.get("TINYRAG_WARM_UP", "1") != "0"
        if warm_up:
            say = self._say if options["verbosity"] else _silent
            warm_up_and_say(say, before="the first task", web=False, describer=True)
        super().handle(*args, **options)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()  # seen at once, also when the output is a file or a pipe


def _silent(line: str) -> None:
    """verbosity 0: the warm-up's lines are not printed (its warnings are still logged)."""
