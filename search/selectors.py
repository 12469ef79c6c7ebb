"""Read queries for the search app's pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from search.index import IndexManifest, SearchIndexError, get_index_service
from search.models import Dataset


def dataset_overview() -> QuerySet[Dataset]:
    """Datasets with their class count and image count per split."""
    return Dataset.objects.annotate(
        class_count=Count("classes", distinct=True),
        train_count=Count("images", filter=Q(images__split="train"), distinct=True),
        val_count=Count("images", filter=Q(images__split="val"), distinct=True),
        test_count=Count("images", filter=Q(images__split="test"), distinct=True),
    )


@dataclass(frozen=True)
class IndexStatus:
    manifest: IndexManifest | None
    problem: str = ""  # what is wrong and the command that fixes it


def index_status(name: str | None = None) -> IndexStatus:
    """The published index the searches use, or why there is none."""
    try:
        return IndexStatus(get_index_service(name).manifest)
    except SearchIndexError as exc:
        return IndexStatus(None, str(exc))
