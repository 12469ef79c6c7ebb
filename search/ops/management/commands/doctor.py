"""Print what works and what does not: database, index, task backend, models, dataset.

The same readiness checks as /readyz, plus the ones a person wants before trusting a server
(search.ops.health.doctor_checks). Exit status 1 when anything is wrong.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search.ops.health import doctor_checks


class Command(BaseCommand):
    help = "Check the database, the index, the task backend, the models and the dataset."

    def add_arguments(self, parser):
        parser.add_argument(
            "--load-models",
            action="store_true",
            help="Also load CLIP, to prove it works (seconds; /readyz never does).",
        )

    def handle(self, *args, **options):
        checks = doctor_checks(load_models=options["load_models"])
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = self.style.SUCCESS("ok  ") if c.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {c.name:<{width}}  {c.detail}")
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"not healthy: {', '.join(failed)}", returncode=1)
