"""Import a prepared collection's classes and images into the database; safe to run again.

A rerun rescans: new files are added, changed ones (size or mtime moved, then other bytes by
sha256) updated, and files that now fail to decode reported with their rows kept. Rows whose
files have gone are reported, and removed only with --prune (with the users' search results
and descriptions of those images); class names (English and Indonesian) follow their
sources. The work is search.catalog.datasets.importer.import_dataset.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog.datasets.importer import SCANNERS, import_dataset
from search.catalog.datasets.tinyimagenet import DIR_NAME
from search.catalog.models import Dataset
from search.errors import ApplicationError
from search.ops.progress import DEFAULT_WORKERS, progress_factory


class Command(BaseCommand):
    help = (
        "Load classes (wnid; English names from words.txt or the folder names, Indonesian ones "
        "from TinyRAG's table or the folder's class_names.tsv) and images into the database."
    )

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
            "--prune",
            action="store_true",
            help="Delete rows whose image files no longer exist, with the users' search "
            "results and descriptions of those images.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help="Processes reading image headers (default: up to 4).",
        )

    def handle(self, *args, **options):
        try:
            report = import_dataset(
                root=options["root"] or settings.TINYRAG_DATA_DIR / DIR_NAME,
                name=options["name"],
                source=options["format"],
                prune=options["prune"],
                workers=options["workers"],
                progress_factory=progress_factory(options["verbosity"]),
            )
        except (ApplicationError, OSError) as exc:
            raise CommandError(str(exc)) from None

        out = self.stdout.write if options["verbosity"] >= 1 else (lambda *_: None)
        out(
            f"Dataset {report.dataset.name}{' (new)' if report.created_dataset else ''}: "
            f"{report.classes_added} classes added, {report.classes_updated} updated; "
            f"{report.images_added:,} images added ({report.images_renamed:,} renamed), "
            f"{report.images_changed:,} changed, {report.images_unchanged:,} unchanged."
        )
        if report.stray:
            self.stderr.write(f"Ignored {report.stray} stray files (see check_dataset).")
        if report.unreadable:
            self.stderr.write(f"Skipped {len(report.unreadable)} unreadable images:")
            for line in report.unreadable:
                self.stderr.write(f"  {line}")
        if report.missing_on_disk:
            verb = "removed" if options["prune"] else "kept; --prune removes them"
            self.stderr.write(
                f"{report.missing_on_disk:,} imported images are no longer on disk ({verb})."
            )
        if report.history_pruned:
            self.stderr.write(
                f"{report.history_pruned:,} search results and descriptions of users' history "
                "went with them."
            )
        out(self.style.SUCCESS(f"Imported in {report.seconds:.1f} s."))
