"""Import a prepared collection's classes and images into the database; safe to run again.

A rerun adds only what is new. Rows whose files have gone are reported, and removed only
with --prune.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog.datasets import DatasetError
from search.catalog.datasets.imagefolder import scan_imagefolder
from search.catalog.datasets.importer import import_scan
from search.catalog.datasets.roots import root_problem
from search.catalog.datasets.tinyimagenet import DIR_NAME
from search.catalog.datasets.tinyimagenet import scan as scan_tinyimagenet
from search.catalog.models import Dataset
from search.ops.progress import DEFAULT_WORKERS, progress_factory

SCANNERS = {
    Dataset.Source.TINYIMAGENET: scan_tinyimagenet,
    Dataset.Source.IMAGEFOLDER: scan_imagefolder,
}


class Command(BaseCommand):
    help = "Load classes (wnid, names from words.txt) and images into the database."

    def add_arguments(self, parser):
        parser.add_argument(
            "--root",
            type=Path,
            help=f"Prepared dataset folder (default: TINYRAG_DATA_DIR/{DIR_NAME}).",
        )
        parser.add_argument(
            "--name", default=DIR_NAME, help=f"Dataset name in the database (default {DIR_NAME})."
        )
        parser.add_argument(
            "--format",
            choices=[s.value for s in SCANNERS],
            default=Dataset.Source.TINYIMAGENET,
            help="tinyimagenet (prepared layout) or imagefolder "
            "(<class>/<image> or <split>/<class>/<image>).",
        )
        parser.add_argument(
            "--prune", action="store_true", help="Delete rows whose image files no longer exist."
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help="Processes reading image headers (default: up to 4).",
        )

    def handle(self, *args, **options):
        root = (options["root"] or settings.TINYRAG_DATA_DIR / DIR_NAME).expanduser().absolute()
        problem = root_problem(str(root))
        if problem is not None:  # its images would be refused when served
            raise CommandError(f"{root}: {problem}")
        started = time.perf_counter()
        try:
            found = SCANNERS[options["format"]](root)
            report = import_scan(
                found,
                name=options["name"],
                source=options["format"],
                prune=options["prune"],
                workers=options["workers"],
                progress_factory=progress_factory(options["verbosity"]),
            )
        except (DatasetError, OSError) as exc:
            raise CommandError(str(exc)) from None
        elapsed = time.perf_counter() - started

        out = self.stdout.write if options["verbosity"] >= 1 else (lambda *_: None)
        out(
            f"Dataset {report.dataset.name}{' (new)' if report.created_dataset else ''}: "
            f"{report.classes_added} classes added, {report.classes_updated} updated; "
            f"{report.images_added:,} images added, {report.images_unchanged:,} already there."
        )
        if found.stray:
            self.stderr.write(f"Ignored {len(found.stray)} stray files (see check_dataset).")
        if report.unreadable:
            self.stderr.write(f"Skipped {len(report.unreadable)} unreadable images:")
            for line in report.unreadable:
                self.stderr.write(f"  {line}")
        if report.missing_on_disk:
            verb = "removed" if options["prune"] else "kept; --prune removes them"
            self.stderr.write(
                f"{report.missing_on_disk:,} imported images are no longer on disk ({verb})."
            )
        out(self.style.SUCCESS(f"Imported in {elapsed:.1f} s."))
