"""Reads of the collection: datasets, classes, images and where an image's file is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db.models import F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Lower

from search.catalog.counts import ensure_current_counts
from search.catalog.datasets.layout import IMAGE_SUFFIXES
from search.catalog.datasets.roots import root_problem
from search.catalog.models import CollectionSync, Dataset, Image, ImageClass


@dataclass(frozen=True)
class CollectionSize:
    datasets: int
    images: int


def dataset_overview() -> QuerySet[Dataset]:
    """Datasets with `class_count` and their image count per split (`train_count`,
    `val_count`, `test_count`): stored counts, checked against the rows first
    (search/catalog/counts.py), so this costs milliseconds however large the collection."""
    ensure_current_counts()
    return Dataset.objects.all()


@dataclass(frozen=True)
class SyncOverview:
    """A collection's syncs as its card shows them: the last one that ended, and the one
    running or waiting (its schedule, if any, is that one's every_minutes)."""

    last: CollectionSync | None = None
    pending: CollectionSync | None = None


def sync_overview() -> dict[int, SyncOverview]:
    """Each synced dataset's SyncOverview by dataset id; a sync whose worker died is failed
    first (search/index/sync.py, which also restores a schedule such a sync ended). A fixed
    number of queries, however many syncs there were."""
    from search.index.sync import SYNCS  # here: it imports the importer and the build
    from search.ops import jobs

    jobs.recover_stalled(SYNCS, CollectionSync.objects.filter(status=CollectionSync.Status.RUNNING))
    open_syncs = CollectionSync.objects.filter(status__in=CollectionSync.OPEN)
    # the running one wins over the queued one: "queued" sorts before "running"
    pending = {s.dataset_id: s for s in open_syncs.order_by("status", "created_at")}
    ended = CollectionSync.objects.exclude(status__in=CollectionSync.OPEN)
    latest = ended.filter(dataset=OuterRef("dataset")).order_by("-finished_at", "-pk")
    last = {s.dataset_id: s for s in ended.filter(pk=Subquery(latest.values("pk")[:1]))}
    return {
        pk: SyncOverview(last=last.get(pk), pending=pending.get(pk)) for pk in {*pending, *last}
    }


def collection_size() -> CollectionSize:
    """How many datasets and images are imported (bootstrap and doctor report it)."""
    return CollectionSize(datasets=Dataset.objects.count(), images=Image.objects.count())


def class_choices(dataset_name: str | None) -> QuerySet[ImageClass]:
    """The classes of the indexed dataset sorted for people (case-insensitive by English name,
    then wnid), for the class filter; none without one. The picker (choices.class_options)
    orders them again by their names in the page language."""
    classes = ImageClass.objects.order_by(Lower("name"), "wnid")
    return classes.filter(dataset__name=dataset_name) if dataset_name else classes.none()


def class_overview(dataset: Dataset, language: str | None = None) -> list[ImageClass]:
    """The classes of one dataset with `image_count` (all splits, stored), sorted for people
    by their names in `language` (default: the page's; case-insensitive, then wnid): the
    "browse classes" list. Sorted here, not in SQL, as the names live in JSON (a dataset has
    hundreds of classes, not millions)."""
    ensure_current_counts([dataset.pk])
    classes = ImageClass.objects.filter(dataset=dataset).annotate(image_count=F("image_total"))
    return sorted(classes, key=lambda c: (c.name_in(language).casefold(), c.wnid))


def classes_with_counts() -> QuerySet[ImageClass]:
    """Every class of every dataset with `image_count` (all splits, stored), by dataset and
    wnid."""
    ensure_current_counts()
    return (
        ImageClass.objects.select_related("dataset")
        .annotate(image_count=F("image_total"))
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


# --- browsing the collection: a class's page, an image's place in its class ---------------


@dataclass(frozen=True)
class ClassPosition:
    """Where an image stands among its class's images (in class_images order)."""

    number: int  # 1-based
    total: int  # images in the class
    previous_id: int | None
    next_id: int | None


def get_class(*, class_id: int) -> ImageClass:
    """One class with its dataset and `image_count` (all splits, stored, as class_overview
    gives it); ImageClass.DoesNotExist if none. Classes, like images, are every user's to see."""
    ensure_current_counts()
    return (
        ImageClass.objects.select_related("dataset")
        .annotate(image_count=F("image_total"))
        .get(pk=class_id)
    )


def class_images(image_class: ImageClass) -> QuerySet[Image]:
    """The images of a class in import order: what the class page pages through."""
    return Image.objects.filter(image_class=image_class).order_by("id")


def image_position_in_class(image: Image) -> ClassPosition | None:
    """The image's number in its class, how many the class has and its neighbours there
    (None: an unlabelled image). Four indexed queries over one class's rows (600 in
    TinyImageNet)."""
    if image.image_class_id is None:
        return None
    same_class = Image.objects.filter(image_class_id=image.image_class_id)
    before = same_class.filter(pk__lt=image.pk)
    previous_id = before.order_by("-pk").values_list("pk", flat=True).first()
    next_id = same_class.filter(pk__gt=image.pk).order_by("pk").values_list("pk", flat=True)
    return ClassPosition(before.count() + 1, same_class.count(), previous_id, next_id.first())
