"""Extract TinyImageNet-200 and lay it out as class folders; safe to run again.

val images move to `val/<wnid>/` by val_annotations.txt, train images up to `train/<wnid>/`
(the `_boxes.txt` files stay). No image is ever deleted or overwritten.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog.datasets.tinyimagenet import DIR_NAME, prepare
from search.errors import ApplicationError
from search.ops.progress import progress_factory


class Command(BaseCommand):
    help = "Extract tiny-imagenet-200.zip if needed and lay out train/val as class folders."

    def add_arguments(self, parser):
        parser.add_argument(
            "--root", type=Path, help=f"Dataset folder (default: TINYRAG_DATA_DIR/{DIR_NAME})."
        )
        parser.add_argument(
            "--archive",
            type=Path,
            help="Zip to extract when the folder does not exist "
            "(default: the .zip beside the folder).",
        )

    def handle(self, *args, **options):
        root = options["root"] or settings.TINYRAG_DATA_DIR / DIR_NAME
        try:
            report = prepare(
                root, options["archive"], progress_factory=progress_factory(options["verbosity"])
            )
        except (ApplicationError, OSError) as exc:
            raise CommandError(str(exc)) from None
        out = self.stdout.write if options["verbosity"] >= 1 else (lambda *_: None)
        if report.extracted_files:
            out(f"Extracted {report.extracted_files:,} files into {root}.")
        for split, n in sorted(report.moved.items()):
            out(f"Moved {n:,} {split} images into class folders.")
        if report.unplaced:
            self.stderr.write(f"{len(report.unplaced):,} files could not be placed (left as is):")
            for line in report.unplaced:
                self.stderr.write(f"  {line}")
        elif not report.changed:
            out(f"{root} is already prepared; nothing changed.")
        else:
            out(self.style.SUCCESS(f"{root} is laid out."))
