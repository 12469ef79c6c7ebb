"""Check a prepared TinyImageNet-200 folder: counts, unreadable files, mismatches, strays;
or, with --format imagefolder, an image folder: unreadable files, strays and the bad lines of
its class_names.tsv (search/catalog/class_names.py).

Exit status 0 when complete and clean; 1 with the list of problems otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog.datasets.imagefolder import check_imagefolder
from search.catalog.datasets.tinyimagenet import DIR_NAME, Expectations, check
from search.catalog.models import Dataset
from search.errors import ApplicationError
from search.ops.progress import DEFAULT_WORKERS, progress_factory


class Command(BaseCommand):
    help = "Report classes, images per split and class, and every problem; non-zero on problems."

    def add_arguments(self, parser):
        defaults = Expectations()
        parser.add_argument(
            "--root", type=Path, help=f"Dataset folder (default: TINYRAG_DATA_DIR/{DIR_NAME})."
        )
        parser.add_argument(
            "--format",
            choices=[s.value for s in Dataset.Source],
            default=Dataset.Source.TINYIMAGENET,
            help="tinyimagenet (counts checked against the --expected-* options) or imagefolder "
            "(<class>/<image> or <split>/<class>/<image>, with an optional class_names.tsv).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the full report as JSON on stdout."
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help="Processes decoding images (default: up to 4; 0 = in-process).",
        )
        parser.add_argument(
            "--expected-classes",
            type=int,
            default=defaults.classes,
            help=f"Classes expected (default {defaults.classes}).",
        )
        parser.add_argument(
            "--expected-train",
            type=int,
            default=defaults.train_per_class,
            help=f"Train images per class (default {defaults.train_per_class}).",
        )
        parser.add_argument(
            "--expected-val",
            type=int,
            default=defaults.val_per_class,
            help=f"Val images per class (default {defaults.val_per_class}).",
        )
        parser.add_argument(
            "--expected-test",
            type=int,
            default=defaults.test,
            help=f"Unlabelled test images (default {defaults.test}).",
        )

    def handle(self, *args, **options):
        root = options["root"] or settings.TINYRAG_DATA_DIR / DIR_NAME
        expect = Expectations(
            classes=options["expected_classes"],
            train_per_class=options["expected_train"],
            val_per_class=options["expected_val"],
            test=options["expected_test"],
        )
        quiet = options["json"] or options["verbosity"] < 1
        try:
            if options["format"] == Dataset.Source.IMAGEFOLDER:
                report = check_imagefolder(
                    root,
                    workers=options["workers"],
                    progress_factory=progress_factory(0 if quiet else 1),
                )
            else:
                report = check(
                    root,
                    expect,
                    workers=options["workers"],
                    progress_factory=progress_factory(0 if quiet else 1),
                )
        except (ApplicationError, OSError) as exc:
            raise CommandError(str(exc)) from None

        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(f"{report.root}: {report.classes} classes")
            for split in ("train", "val", "test"):
                counts = report.per_class.get(split, {}).values()
                spread = f" ({min(counts)}-{max(counts)} per class)" if counts else ""
                self.stdout.write(f"  {split}: {report.images.get(split, 0):,} images{spread}")
            modes = ", ".join(f"{m}: {n:,}" for m, n in sorted(report.modes.items()))
            self.stdout.write(f"  modes: {modes or 'none'} (grayscale images: {report.grayscale})")
        if report.ok:
            if not options["json"]:
                self.stdout.write(self.style.SUCCESS("Complete and clean."))
            return
        for problem in report.problems:
            self.stderr.write(f"PROBLEM: {problem}")
        raise CommandError(f"{len(report.problems)} problems found in {root}", returncode=1)
