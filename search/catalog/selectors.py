"""Reads of the collection: datasets, classes, images and where an image's file is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db.models import Count, Q, QuerySet

from search.catalog.datasets.layout import IMAGE_SUFFIXES
from search.catalog.datasets.roots import root_problem
from search.catalog.models import Dataset, Image, ImageClass


@dataclass(frozen=True)
class CollectionSize:
    datasets: int
    images: int


def dataset_overview() -> QuerySet[Dataset]:
    """Datasets with their class count and image count per split."""
    return Dataset.objects.annotate(
        class_count=Count("classes", distinct=True),
        train_count=Count("images", filter=Q(images__split="train"), distinct=True),
        val_count=Count("images", filter=Q(images__split="val"), distinct=True),
        test_count=Count("images", filter=Q(images__split="test"), distinct=True),
    )


def collection_size() -> CollectionSize:
    """How many datasets and images are imported (bootstrap and doctor report it)."""
    return CollectionSize(datasets=Dataset.objects.count(), images=Image.objects.count())


def class_choices(dataset_name: str | None) -> QuerySet[ImageClass]:
    """The classes of the indexed dataset, by name, for the class filter; none without one."""
    classes = ImageClass.objects.order_by("name")
    return classes.filter(dataset__name=dataset_name) if dataset_name else classes.none()


def classes_with_counts() -> QuerySet[ImageClass]:
    """Every class of every dataset with `image_count` (all splits), by dataset and wnid."""
    return (
        ImageClass.objects.select_related("dataset")
        .annotate(image_count=Count("images"))
        .order_by("dataset__name", "wnid")
    )


def get_image(*, image_id: int) -> Image:
    """One image of the collection with its dataset and class; Image.DoesNotExist if none.
    Collection images are every user's to see: there is no owner to scope to."""
    return Image.objects.select_related("dataset", "image_class").get(pk=image_id)


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


def image_file(*, image_id: int) -> Path:
    """The file of collection image `image_id`, there on disk: Image.DoesNotExist for an
    unknown id, FileNotFoundError for a file that is refused (image_file_path) or missing."""
    path = image_file_path(get_image(image_id=image_id))
    if not path.is_file():
        raise FileNotFoundError(f"image {image_id}: {path.name} is not on disk")
    return path
