"""`manage.py db_worker`: django-tasks-db's worker, made to outlive a locked or briefly
unavailable database, which loads the models its tasks use before it takes the first one.

    manage.py db_worker --no-reload            # as documented by django-tasks-db, same options
    manage.py db_worker --no-warm-up           # models load on first use (TINYRAG_WARM_UP=0 too)

Warm-up: CLIP and the published index (an evaluation's searches, its descriptions' retrieved
context), and the description model when it runs in this process (TINYRAG_VLM_BACKEND=
transformers), so the first description does not wait seconds for Qwen2-VL to load; the output
says when it starts and "ready in X s" when done. A model that cannot be loaded is reported and
the worker starts regardless (its tasks then fail with the same clear error). A --batch run
(until the queue is empty) warms nothing unless asked: it loads what its tasks use anyway.

The library's loop gives up at the first database error it does not expect: a SQLite file
locked longer than the busy timeout (its `BEGIN EXCLUSIVE` sits outside its own "is locked"
handler), a PostgreSQL server restarting, a dropped connection. The worker process then exits
and, under deploy/dev.sh, took the web server down with it. Here such an error is logged, the
connections are dropped, and the loop starts again after a back-off that doubles from
RETRY_FIRST_S to RETRY_MAX_S (reset once the loop has run that long without an error).
Errors inside a task are the library's business: they fail that task, not the worker.

This app comes before django_tasks_db in INSTALLED_APPS, which is how its command name wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from django.db import connections
from django.db.utils import InterfaceError, OperationalError
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands import db_worker

from search.ops.health import add_worker_warm_up_option, warm_up_and_say

logger = logging.getLogger("search.ops.worker")

# Errors that mean "the database cannot be used right now", not "the code is wrong".
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


def retry_delay(failures: int) -> float:
    """Seconds to wait after `failures` consecutive database errors (1, 2, ...)."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (failures - 1))


class ResilientWorker(db_worker.Worker):
    """The library's worker, whose loop is restarted after a database error."""

    def run(self) -> None:
        failures = 0
        while self.running:
            started = time.monotonic()
            try:
                super().run()
                return  # --batch or --max-tasks: done
            except DATABASE_UNAVAILABLE as exc:
                if time.monotonic() - started >= RETRY_MAX_S:
                    failures = 0  # it had been working: start the back-off again
                failures += 1
                delay = retry_delay(failures)
                logger.warning(
                    "worker %s: the database is unavailable (%s: %s); retrying in %.1f s "
                    "(attempt %d)",
                    self.worker_id,
                    type(exc).__name__,
                    str(exc).strip() or repr(exc),
                    delay,
                    failures,
                )
                self._drop_connections()
                self.startup_delay = False  # the random start-up pause is for the first start
                time.sleep(delay)  # Ctrl-C / SIGTERM here exits, as in the library's sleep

    @staticmethod
    def _drop_connections() -> None:
        """A connection that failed may be half-open or mid-transaction: close every one so
        the next loop opens fresh ones."""
        for connection in connections.all(initialized_only=True):
            # closing a dead connection can fail too; it is gone either way
            with contextlib.suppress(DATABASE_UNAVAILABLE):
                connection.close()


class Command(db_worker.Command):
    help = (
        "Run a database background worker (django-tasks-db's), retrying with back-off when "
        "the database is locked or unavailable instead of exiting; loads the models its "
        "tasks use before the first one."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        add_worker_warm_up_option(parser, batch_option="--batch")

    def handle(
        self,
        *,
        verbosity: int,
        queue_name: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        reload: bool,
        max_tasks: int | None,
        worker_id: str,
        exclude_queues: str,
        warm_up: bool | None,
        **options,
    ) -> None:
        # django-tasks-db 0.13's handle(), building a ResilientWorker instead of its Worker,
        # and warming up in the process that runs the tasks.
        self.configure_logging(verbosity)
        if reload and batch:
            logger.warning("--reload and --batch cannot be specified together; not reloading.")
            reload = False
        queue_names = queue_name.split(",")
        excluded_queue_names = exclude_queues.split(",") if exclude_queues else []
        if excluded_queue_names and "*" not in queue_names:
            raise db_worker.CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = ResilientWorker(
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=excluded_queue_names,
        )
        if warm_up is None:
            warm_up = not batch and os.environ.get("TINYRAG_WARM_UP", "1") != "0"

        def run() -> None:
            if warm_up:
                say = self._say if verbosity else _silent
                warm_up_and_say(say, before="the first task", web=False, describer=True)
            worker.run()

        if reload:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the reloaded child handles signals
            run_with_reloader(run)
        else:
            worker.configure_signals()
            run()

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()  # seen at once, also when the output is a file or a pipe


def _silent(line: str) -> None:
    """verbosity 0: the warm-up's lines are not printed (its warnings are still logged)."""
