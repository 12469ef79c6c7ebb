"""Bring a collection's index up to date with its folder: import_dataset's rescan, then an
incremental build_index (only new and changed images are embedded), as one recorded sync.

    manage.py sync_collection NAME                  # here and now, with progress bars
    manage.py sync_collection NAME --prune          # also remove the rows of vanished files
    manage.py sync_collection NAME --background     # queue one sync for the worker
    manage.py sync_collection NAME --every 60       # the worker syncs it now, then hourly
    manage.py sync_collection NAME --every 0        # end that schedule

The work is search.index.sync; the Collections page shows each collection's last sync.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search.errors import ApplicationError
from search.index.sync import request_sync, sync_now


class Command(BaseCommand):
    help = "Rescan a collection's folder and update its index incrementally (import + build)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The dataset's name (import_dataset --name).")
        parser.add_argument("--index", help="The index it feeds (default: TINYRAG_INDEX_NAME).")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Delete the rows of files that have gone, with the users' search results and "
            "descriptions of them; their vectors leave the index either way.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            help="Processes reading and decoding images (default: as import_dataset and "
            "build_index choose).",
        )
        when = parser.add_mutually_exclusive_group()
        when.add_argument(
            "--background", action="store_true", help="Queue one sync for the background worker."
        )
        when.add_argument(
            "--every",
            type=int,
            metavar="MINUTES",
            help="Queue a sync now and then every MINUTES after each ends; 0 ends the schedule.",
        )

    def handle(self, *args, **options):
        name, every = options["name"], options["every"]
        if every is not None and every < 0 or (options["workers"] or 0) < 0:
            raise CommandError("--every and --workers take 0 or more")
        verbose = options["verbosity"] >= 1
        try:
            if options["background"] or every is not None:
                queued = request_sync(
                    name, index_name=options["index"], prune=options["prune"], every_minutes=every
                )
                if queued is None:
                    self.stdout.write(f"Collection {name}: no more scheduled syncs.")
                else:
                    repeat = f", then every {every} minutes" if every else ""
                    self.stdout.write(f"Queued a sync of {name} for the background worker{repeat}.")
                return
            sync = sync_now(
                name,
                index_name=options["index"],
                prune=options["prune"],
                workers=options["workers"],
                console=verbose,
                log=self.stdout.write if verbose else (lambda _: None),
            )
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None
        if sync.error:
            raise CommandError(f"The sync of {name} failed: {sync.error}")
        if verbose:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Synced {name}: {sync.images_added:,} images added "
                    f"({sync.images_renamed:,} renamed), {sync.images_changed:,} changed, "
                    f"{sync.images_missing:,} gone ({sync.images_pruned:,} pruned), "
                    f"{sync.images_unreadable:,} unreadable; index {sync.index_name!r}: "
                    f"{sync.vectors_total:,} vectors, {sync.vectors_reused:,} reused, "
                    f"{sync.vectors_embedded:,} embedded; "
                    f"{(sync.finished_at - sync.started_at).total_seconds():.1f} s."
                )
            )
