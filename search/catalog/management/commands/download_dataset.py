"""Download the TinyImageNet-200 archive (resumable, verified), or take a local copy.

manage.py download_dataset                       # from the official URL
manage.py download_dataset --archive ~/tiny-imagenet-200.zip   # offline
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog.datasets.download import TINYIMAGENET_URL, fetch_archive
from search.errors import ApplicationError
from search.ops.progress import progress_factory


class Command(BaseCommand):
    help = "Download tiny-imagenet-200.zip (resuming a partial download) or copy a local archive."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default=TINYIMAGENET_URL, help=f"Archive URL (default: {TINYIMAGENET_URL})."
        )
        parser.add_argument(
            "--archive",
            type=Path,
            help="Use this local zip instead of downloading (works offline).",
        )
        parser.add_argument(
            "--dest", type=Path, help="Folder to put the archive in (default: TINYRAG_DATA_DIR)."
        )
        parser.add_argument("--sha256", help="Expected sha256 of the archive; checked if given.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=15.0,
            help="Seconds to wait for the server before giving up (default 15).",
        )

    def handle(self, *args, **options):
        try:
            result = fetch_archive(
                dest_dir=options["dest"] or settings.TINYRAG_DATA_DIR,
                archive=options["archive"],
                url=options["url"],
                sha256=options["sha256"],
                timeout=options["timeout"],
                progress=progress_factory(options["verbosity"]),
            )
        except ApplicationError as exc:
            hint = (
                ""
                if options["archive"]
                else " Without network, download the archive elsewhere and pass --archive PATH."
            )
            raise CommandError(f"{exc}.{hint}") from None
        if result.already_present:
            self.stdout.write(f"{result.path} is already there ({result.size:,} bytes).")
        elif result.resumed_from:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Resumed at {result.resumed_from:,} bytes; {result.path} is complete "
                    f"({result.size:,} bytes)."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Saved {result.path} ({result.size:,} bytes)."))
