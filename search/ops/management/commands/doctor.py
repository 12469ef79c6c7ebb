"""Print what works and what does not: database, index, task backend, models, dataset.

The same readiness checks as /readyz, plus the ones a person wants before trusting a server.
Exit status 1 when anything is wrong.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.ops.health import Check, readiness


class Command(BaseCommand):
    help = "Check the database, the index, the task backend, the models and the dataset."

    def add_arguments(self, parser):
        parser.add_argument(
            "--load-models",
            action="store_true",
            help="Also load CLIP (and the text model) to prove they work.",
        )

    def handle(self, *args, **options):
        checks = readiness() + [self._dataset()]
        if options["load_models"]:
            checks.append(self._clip())
        checks.append(self._describer())
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = self.style.SUCCESS("ok  ") if c.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {c.name:<{width}}  {c.detail}")
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"not healthy: {', '.join(failed)}", returncode=1)

    def _dataset(self) -> Check:
        from search.catalog.models import Dataset, Image

        count = Image.objects.count()
        if not count:
            return Check("dataset", False, "no images imported; run: python manage.py bootstrap")
        return Check("dataset", True, f"{Dataset.objects.count()} dataset(s), {count:,} images")

    def _clip(self) -> Check:
        from search.ml.errors import ModelError
        from search.ml.registry import get_clip_embedder

        try:
            embedder = get_clip_embedder()
            embedder.load()
        except ModelError as exc:
            return Check("clip", False, str(exc))
        return Check("clip", True, f"{embedder.model_id} (dim {embedder.dim})")

    def _describer(self) -> Check:
        backend = settings.TINYRAG_VLM_BACKEND
        if backend == "none":
            return Check("descriptions", True, "disabled (TINYRAG_VLM_BACKEND=none)")
        where = settings.TINYRAG_VLM_URL if backend == "openai" else settings.TINYRAG_VLM_MODEL
        return Check("descriptions", True, f"{backend}: {where}")
