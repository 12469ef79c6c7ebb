"""`manage.py runserver`: Django's development server (with staticfiles' handler), which loads
the index and the models in the background once it listens, as gunicorn workers do before
they serve (deploy/gunicorn.conf.py): the first search does not wait seconds for CLIP.

    manage.py runserver                      # warms up (TINYRAG_WARM_UP=0 or --no-warm-up: not)

Only the process that serves warms up: under the autoreloader that is the child, again after
each reload.
"""

from __future__ import annotations

import os
from argparse import BooleanOptionalAction

from django.contrib.staticfiles.management.commands import runserver

from search.ops.health import warm_up_in_background


class Command(runserver.Command):
    help = (
        "Start the development server (static files served too) and load the index and the "
        "models in the background, so the first search does not wait for them."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--warm-up",
            action=BooleanOptionalAction,
            default=os.environ.get("TINYRAG_WARM_UP", "1") != "0",
            help="Load the index and the models in the background once listening "
            "(default: on; TINYRAG_WARM_UP=0 turns it off, as for gunicorn).",
        )

    def inner_run(self, *args, **options):
        self._warm_up = options["warm_up"]
        return super().inner_run(*args, **options)

    def on_bind(self, server_port):
        super().on_bind(server_port)
        if self._warm_up:
            warm_up_in_background()
