"""Read queries for the search app's pages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db.models import Count, Prefetch, Q, QuerySet

from search.datasets.layout import IMAGE_SUFFIXES
from search.datasets.roots import root_problem
from search.index import IndexManifest, SearchIndexError, get_index_service
from search.models import Dataset, Image, ImageClass, SearchQuery, SearchResult


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


def query_history(*, user) -> QuerySet[SearchQuery]:
    """The user's own queries, newest first, with what the history list shows."""
    return (
        SearchQuery.objects.filter(user=user)
        .select_related("source_image__image_class")
        .annotate(result_count=Count("results"))
        .prefetch_related(
            Prefetch(
                "results",
                queryset=SearchResult.objects.filter(rank=1).select_related(
                    "image__image_class", "image__dataset"
                ),
                to_attr="top_results",
            )
        )
        .order_by("-created_at", "-id")
    )


def get_query(*, user, query_id: int) -> SearchQuery:
    """One of the user's queries; another user's id is simply not found (404, not 403)."""
    return SearchQuery.objects.select_related("source_image").get(pk=query_id, user=user)


def query_results(query: SearchQuery):
    return query.results.select_related("image__image_class", "image__dataset").order_by("rank")


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


def get_description(*, user, description_id: int):
    """One of the user's descriptions (through its query); others' are not found."""
    from search.models import Description

    return Description.objects.select_related("query", "image__image_class").get(
        pk=description_id, query__user=user
    )


def descriptions_enabled() -> bool:
    from django.conf import settings

    return settings.TINYRAG_VLM_BACKEND != "none"
