"""The stored counts of the collection (Dataset.class_count and the per-split counts,
ImageClass.image_total): written where images change, checked cheaply where they are read.

Counting per request was what took the development stack down: on SQLite with 120k images the
collections page's COUNT(DISTINCT) over a join ran 7.5 s, holding the file while the worker
needed to write. Now:

- `refresh_counts` recounts datasets with two GROUP BY queries on indexed columns (tens of
  ms for 120k rows); import_dataset calls it after every import and prune, and saving one
  Image (the admin) calls it too, in the same transaction as the change.
- `ensure_current_counts` is what readers call: the tables' row counts compared with what is
  stored (a millisecond); a difference (rows deleted in the admin or by a cascade, which
  send no recount) is found per dataset and recounted there and then, so nothing stale is
  shown.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, F, Sum

from search.catalog.models import Dataset, Image, ImageClass

SPLIT_FIELDS = {
    Image.Split.TRAIN: "train_count",
    Image.Split.VAL: "val_count",
    Image.Split.TEST: "test_count",
}


def refresh_counts(dataset_ids: Iterable[int] | None = None) -> None:
    """Recount the classes and images of these datasets (None: every dataset)."""
    datasets = Dataset.objects.all()
    if dataset_ids is not None:
        datasets = datasets.filter(pk__in=list(dataset_ids))
    with transaction.atomic():
        for dataset in datasets.select_for_update():
            _recount(dataset)


def _recount(dataset: Dataset) -> None:
    images = Image.objects.filter(dataset=dataset).order_by()
    per_split = dict(images.values("split").annotate(n=Count("id")).values_list("split", "n"))
    per_class = dict(
        images.filter(image_class__isnull=False)
        .values("image_class")
        .annotate(n=Count("id"))
        .values_list("image_class", "n")
    )
    classes = list(dataset.classes.only("id", "image_total"))
    changed = [c for c in classes if c.image_total != per_class.get(c.pk, 0)]
    for image_class in changed:
        image_class.image_total = per_class.get(image_class.pk, 0)
    ImageClass.objects.bulk_update(changed, ["image_total"], batch_size=500)
    dataset.class_count = len(classes)
    for split, field in SPLIT_FIELDS.items():
        setattr(dataset, field, per_split.get(split, 0))
    dataset.save(update_fields=["class_count", *SPLIT_FIELDS.values()])


def stale_datasets(dataset_ids: Iterable[int] | None = None) -> list[int]:
    """Datasets whose stored image or class totals differ from the rows there are.

    First the whole tables' COUNT(*) against the sums of what is stored (under a millisecond
    for 120k images on SQLite): rows are only ever added unrecorded by nothing (imports and
    single saves recount), so equal sums mean nothing was deleted behind the counts' back.
    Only then per dataset: one GROUP BY over an indexed column per table (about 10 ms).
    Totals cannot see an image moved to another split or class by QuerySet.update(): nothing
    does that today; whatever starts to must call refresh_counts()."""
    sums = Dataset.objects.aggregate(
        classes=Sum("class_count"), images=Sum(F("train_count") + F("val_count") + F("test_count"))
    )
    if (sums["classes"] or 0) == ImageClass.objects.count() and (
        sums["images"] or 0
    ) == Image.objects.count():
        return []
    images = Image.objects.order_by().values("dataset").annotate(n=Count("id"))
    classes = ImageClass.objects.order_by().values("dataset").annotate(n=Count("id"))
    stored = Dataset.objects.values_list("pk", "class_count", *SPLIT_FIELDS.values())
    if dataset_ids is not None:
        wanted = list(dataset_ids)
        images = images.filter(dataset__in=wanted)
        classes = classes.filter(dataset__in=wanted)
        stored = stored.filter(pk__in=wanted)
    image_totals = dict(images.values_list("dataset", "n"))
    class_totals = dict(classes.values_list("dataset", "n"))
    return [
        pk
        for pk, class_count, *split_counts in stored
        if class_count != class_totals.get(pk, 0) or sum(split_counts) != image_totals.get(pk, 0)
    ]


def ensure_current_counts(dataset_ids: Iterable[int] | None = None) -> None:
    """Recount whatever `stale_datasets` finds (usually nothing: then this is the check)."""
    stale = stale_datasets(dataset_ids)
    if stale:
        refresh_counts(stale)
