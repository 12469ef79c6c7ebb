"""Read queries for the search app's pages."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from search.models import Dataset


def dataset_overview() -> QuerySet[Dataset]:
    """Datasets with their class count and image count per split."""
    return Dataset.objects.annotate(
        class_count=Count("classes", distinct=True),
        train_count=Count("images", filter=Q(images__split="train"), distinct=True),
        val_count=Count("images", filter=Q(images__split="val"), distinct=True),
        test_count=Count("images", filter=Q(images__split="test"), distinct=True),
    )
