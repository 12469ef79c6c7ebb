"""From nothing to a searchable index in one command, skipping every step already done.

download_dataset -> prepare_dataset -> check_dataset -> import_dataset -> setup_models ->
build_index. Default: 50 train images per class (10,000 images, minutes on a CPU); --full
indexes all 100,000.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from search.catalog.datasets.download import TINYIMAGENET_URL
from search.catalog.datasets.tinyimagenet import ARCHIVE_NAME, DIR_NAME
from search.catalog.selectors import collection_size
from search.index.selectors import is_published

DEFAULT_LIMIT = 50


class Command(BaseCommand):
    help = (
        "Download, prepare, check and import TinyImageNet-200, set up the models and build "
        "the index, skipping steps already done."
    )

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--limit-per-class",
            type=int,
            default=DEFAULT_LIMIT,
            help=f"Train images indexed per class (default {DEFAULT_LIMIT}).",
        )
        group.add_argument(
            "--full", action="store_true", help="Index every train image (100,000) instead."
        )
        parser.add_argument("--archive", help="A local tiny-imagenet-200.zip (no download).")
        parser.add_argument(
            "--url",
            default=TINYIMAGENET_URL,
            help=f"Where to download the archive from (default {TINYIMAGENET_URL}).",
        )

    def handle(self, *args, **options):
        data = settings.TINYRAG_DATA_DIR
        root = data / DIR_NAME
        sub = {"verbosity": options["verbosity"], "stdout": self.stdout, "stderr": self.stderr}
        steps = [
            (
                "download",
                not (root.exists() or (data / ARCHIVE_NAME).exists()),
                lambda: call_command(
                    "download_dataset",
                    *(
                        ["--archive", options["archive"]]
                        if options["archive"]
                        else ["--url", options["url"]]
                    ),
                    **sub,
                ),
            ),
            ("prepare", True, lambda: call_command("prepare_dataset", **sub)),
            ("check", True, lambda: self._check(sub)),
            ("import", True, lambda: call_command("import_dataset", **sub)),
            ("setup_models", not is_published(), lambda: call_command("setup_models", **sub)),
            (
                "build_index",
                not is_published(),
                lambda: call_command(
                    "build_index",
                    *(
                        []
                        if options["full"]
                        else ["--limit-per-class", str(options["limit_per_class"])]
                    ),
                    **sub,
                ),
            ),
        ]
        for number, (name, needed, run) in enumerate(steps, start=1):
            prefix = f"[{number}/{len(steps)}] {name}"
            if not needed:
                self.stdout.write(f"{prefix}: already done, skipped")
                continue
            self.stdout.write(f"{prefix} ...")
            try:
                run()
            except CommandError as exc:
                raise CommandError(f"bootstrap stopped at {name}: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Ready: index {settings.TINYRAG_INDEX_NAME!r}; "
                f"{collection_size().images:,} images in the database."
            )
        )

    def _check(self, sub) -> None:
        """Problems are reported but do not stop the bootstrap: what is there is still usable."""
        try:
            call_command("check_dataset", **sub)
        except CommandError as exc:
            self.stderr.write(f"check_dataset: {exc}; continuing with the images that are there")
