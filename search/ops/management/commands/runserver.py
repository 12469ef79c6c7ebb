"""`manage.py runserver`: Django's development server (with staticfiles' handler), which loads
the index and the models before it serves its first request, as gunicorn workers do
(deploy/gunicorn.conf.py): the first search does not wait seconds for CLIP.

    manage.py runserver                      # warms up (TINYRAG_WARM_UP=0 or --no-warm-up: not)

The warm-up runs once the port is bound and before requests are accepted: a browser that
connects meanwhile waits in the listen queue instead of being refused, and is answered as soon
as the output says "warm-up: ready". Only the process that serves warms up: under the
autoreloader that is the child, again after each reload.
"""

from __future__ import annotations

import os
from argparse import BooleanOptionalAction

from django.contrib.staticfiles.management.commands import runserver

from search.ops.health import warm_up_and_say


class Command(runserver.Command):
    help = (
        "Start the development server (static files served too), loading the index and the "
        "models before the first request, so the first search does not wait for them."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--warm-up",
            action=BooleanOptionalAction,
            default=os.environ.get("TINYRAG_WARM_UP", "1") != "0",
            help="Load the index and the models before serving the first request "
            "(default: on; TINYRAG_WARM_UP=0 turns it off, as for gunicorn).",
        )

    def inner_run(self, *args, **options):
        self._warm_up = options["warm_up"]
        return super().inner_run(*args, **options)

    def on_bind(self, server_port):
        """Django's run() calls this once the socket listens and before serve_forever()."""
        super().on_bind(server_port)
        if self._warm_up:
            warm_up_and_say(self._say, before="the first request")

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()  # seen at once, also when the output is a file or a pipe
