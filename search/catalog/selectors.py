"""Reads of the collection: datasets, classes, where an image's file is."""

from __future__ import annotations

from pathlib import Path

from django.db.models import Count, Q, QuerySet

from search.catalog.datasets.layout import IMAGE_SUFFIXES
from search.catalog.datasets.roots import root_problem
from search.catalog.models import Dataset, Image, ImageClass


def dataset_overview() -> QuerySet[Dataset]:
    """Datasets with their class count and image count per split."""
    return Dataset.objects.annotate(
        class_count=Count("classes", distinct=True),
        train_count=Count("images", filter=Q(images__split="train"), distinct=True),
        val_count=Count("images", filter=Q(images__split="val"), distinct=True),
        test_count=Count("images", filter=Q(images__split="test"), distinct=True),
    )


def class_choices(dataset_name: str | None) -> QuerySet[ImageClass]:
    classes = ImageClass.objects.order_by("name")
    return classes.filter(dataset__name=dataset_name) if dataset_name else classes.none()


def classes_with_counts() -> QuerySet[ImageClass]:
    return (
        ImageClass.objects.select_related("dataset")
        .annotate(image_count=Count("images"))
        .order_by("dataset__name", "wnid")
    )


def image_file_path(image: Image) -> Path:
    """The file of a dataset image, from the database alone: an image file (by its suffix)
    inside its dataset's root, which lies where roots may (checked again here, at serve time:
    a row can be changed without Dataset.clean())."""
    problem = root_problem(image.dataset.root)
    if problem:
        raise FileNotFoundError(f"dataset {image.dataset.name!r}: {problem}")
    root = Path(image.dataset.root).resolve()
    path = (root / image.path).resolve()
    if not path.is_relative_to(root):
        raise FileNotFoundError(f"image {image.pk} points outside its dataset")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise FileNotFoundError(f"image {image.pk} is not an image file")
    return path
