"""The collection: datasets, their classes and images. The database is the source of truth
for what the collection holds."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from search.catalog.datasets.roots import root_problem
from search.languages import ENGLISH, page_language
from search.ops.jobs import FINISHED, JobStatus


class Dataset(models.Model):
    class Source(models.TextChoices):
        TINYIMAGENET = "tinyimagenet", "TinyImageNet"
        IMAGEFOLDER = "imagefolder", _("Image folder")

    name = models.SlugField(max_length=100, unique=True)
    root = models.CharField(max_length=1024, help_text="Absolute path of the prepared dataset.")
    source = models.CharField(max_length=32, choices=Source.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # Counts of the collections page, stored: counting 120k rows per request locked SQLite
    # for seconds. Kept by search.catalog.counts (import_dataset, Image saves, a cheap
    # check at read time).
    class_count = models.PositiveIntegerField(default=0, editable=False)
    train_count = models.PositiveIntegerField(default=0, editable=False)
    val_count = models.PositiveIntegerField(default=0, editable=False)
    test_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        db_table = "search_dataset"  # the table it had in the search app
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The admin may not point a dataset at any folder of the server (its files are served
        to every user): the root must lie where search/catalog/datasets/roots.py allows."""
        super().clean()
        problem = root_problem(self.root) if self.root else None
        if problem:
            raise ValidationError({"root": problem})


class ImageClass(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="classes")
    wnid = models.CharField("WordNet id", max_length=64)
    name = models.CharField(max_length=255, help_text="The first synonym.")
    names = models.JSONField(default=list, help_text="All synonyms, in words.txt order.")
    # The class in other page languages (search/languages.py), loaded by import_dataset:
    # {"id": {"name": "kucing mesir", "synonyms": ["kucing mesir", ...], "source": "..."}}.
    # `name`/`names` above are the English ones.
    translations = models.JSONField(
        default=dict,
        blank=True,
        help_text='language -> {"name", "synonyms" (the name first), "source"}',
    )
    # Images of the class, all splits, stored like Dataset's counts (selectors give it to
    # readers as `image_count`).
    image_total = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        db_table = "search_imageclass"  # the table it had in the search app
        ordering = ["dataset", "wnid"]
        verbose_name_plural = "image classes"
        constraints = [
            models.UniqueConstraint(fields=["dataset", "wnid"], name="unique_class_per_dataset")
        ]
        indexes = [models.Index(fields=["dataset", "name"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.wnid})"

    def name_in(self, language: str | None = None) -> str:
        """The class's name in `language` (default: the page's), English where it has none."""
        return self.names_in(language)[0]

    def names_in(self, language: str | None = None) -> list[str]:
        """The class's name and synonyms in `language` (default: the page's), the name first;
        the English ones where it has none in that language."""
        language = page_language(language)
        if language != ENGLISH:
            translated = (self.translations or {}).get(language) or {}
            synonyms = [s for s in translated.get("synonyms") or [] if s]
            name = translated.get("name") or (synonyms[0] if synonyms else "")
            if name:
                return [name, *(s for s in synonyms if s != name)]
        return [self.name, *(n for n in self.names or [] if n != self.name)]

    @property
    def display_name(self) -> str:
        """The name pages show: in the active page language."""
        return self.name_in()


class Image(models.Model):
    class Split(models.TextChoices):
        # The labels stay as they were in the migrations: only their translations differ.
        TRAIN = "train", pgettext_lazy("dataset split", "train")
        VAL = "val", pgettext_lazy("dataset split", "val")
        TEST = "test", pgettext_lazy("dataset split", "test")

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    split = models.CharField(max_length=8, choices=Split.choices)
    image_class = models.ForeignKey(
        ImageClass,
        on_delete=models.CASCADE,
        related_name="images",
        null=True,
        blank=True,
        help_text="Empty for the unlabelled test split.",
    )
    path = models.CharField(max_length=512, help_text="POSIX path relative to the dataset root.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mode = models.CharField(max_length=8, help_text="Pillow mode on disk: RGB, L, ...")
    # What the file was when import_dataset last read it: a rescan re-reads a file only when
    # its size or mtime moved, and build_index reuses embeddings by content_hash.
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes on disk at import.")
    mtime_ns = models.BigIntegerField(default=0, help_text="st_mtime_ns at import.")
    content_hash = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="sha256 (hex) of the file's bytes; empty: not hashed yet.",
    )

    class Meta:
        db_table = "search_image"  # the table it had in the search app
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "path"], name="unique_image_path")
        ]
        indexes = [
            models.Index(fields=["dataset", "split"]),
            models.Index(fields=["image_class", "split"]),
        ]

    def __str__(self) -> str:
        return self.path


@receiver(post_save, sender=Image)
def _recount_after_save(sender, instance: Image, **kwargs) -> None:
    """A row saved one at a time (the admin moves an image to another class or split): its
    dataset's counts again, in the same transaction. Bulk writes (import_dataset) and deletes
    recount themselves or are caught at read time (search.catalog.counts)."""
    from search.catalog.counts import refresh_counts

    if not kwargs.get("raw"):  # loaddata: the fixture's counts are stored as they are
        refresh_counts([instance.dataset_id])


# A sync's steps: the progress bars' names (import_dataset's, build_index's) in words.
SYNC_STEPS = {
    "rescan images": _("Checking the changed files"),
    "import images": _("Reading the new images"),
    "read images": _("Reading the new images"),
    "embed": _("Embedding the images"),
}


class CollectionSync(models.Model):
    """One sync of a collection: import_dataset's rescan of its folder, then an incremental
    build_index of the index it feeds (search/index/sync.py). A job of search.ops.jobs: run
    by the sync_collection command, or queued for a worker (once, or every `every_minutes`:
    the next run is queued when one finishes)."""

    class Trigger(models.TextChoices):
        COMMAND = "command", _("by command")
        WORKER = "worker", _("by a background worker")

    Status = JobStatus
    OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="syncs")
    index_name = models.CharField(max_length=100)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    prune = models.BooleanField(
        default=False, help_text="Delete the rows (and history) of files that have gone."
    )
    every_minutes = models.PositiveIntegerField(
        default=0, help_text="Queue the next sync this long after one finishes; 0: once."
    )
    # what the rescan found (search.catalog.datasets.importer.ImportReport)
    images_added = models.PositiveIntegerField(default=0)
    images_renamed = models.PositiveIntegerField(default=0)
    images_changed = models.PositiveIntegerField(default=0)
    images_unchanged = models.PositiveIntegerField(default=0)
    images_missing = models.PositiveIntegerField(default=0, help_text="Rows whose file is gone.")
    images_pruned = models.PositiveIntegerField(default=0)
    images_unreadable = models.PositiveIntegerField(default=0)
    # what the build did (the index manifest's counts)
    vectors_reused = models.PositiveIntegerField(default=0)
    vectors_embedded = models.PositiveIntegerField(default=0)
    vectors_total = models.PositiveIntegerField(default=0)
    progress = models.JSONField(
        default=dict, blank=True, help_text="While running: step, done, total."
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    run_after = models.DateTimeField(null=True, blank=True, help_text="A scheduled sync's time.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(
        auto_now=True, help_text="Last sign of life; a stalled sync is failed after a while."
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One sync at a time per collection, and one waiting: across every worker and
            # command, as the database decides (a second one is refused, never run twice).
            models.UniqueConstraint(
                fields=["dataset"],
                condition=models.Q(status="running"),
                name="one_running_sync_per_dataset",
            ),
            models.UniqueConstraint(
                fields=["dataset"],
                condition=models.Q(status="queued"),
                name="one_queued_sync_per_dataset",
            ),
        ]

    def __str__(self) -> str:
        return f"sync of {self.dataset_id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def progress_step(self) -> str:
        """The running step in words ("Embedding the images"), for the Collections page."""
        step = self.progress.get("step") or ""
        return str(SYNC_STEPS.get(step, step))

    @property
    def waits_until(self):
        """A queued sync's time to run, while it lies ahead; None once it is due."""
        if self.run_after is not None and self.run_after > timezone.now():
            return self.run_after
        return None


class BuildShard(models.Model):
    """One shard of a distributed build_index (search/index/distributed.py): a job of
    search.ops.jobs that any task worker sharing the database and the shard folder takes. The
    embeddings themselves are in the shard folder, `<TINYRAG_SHARD_DIR>/<store>/`."""

    Status = JobStatus

    build = models.CharField(max_length=64, help_text="The build's fingerprint.")
    index_name = models.CharField(max_length=100)
    store = models.CharField(max_length=200, help_text="The build's folder in the shard root.")
    number = models.PositiveIntegerField()
    images = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the last taker.")
    progress = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, help_text="The worker's last sign of life.")

    class Meta:
        ordering = ["build", "number"]
        constraints = [
            models.UniqueConstraint(fields=["build", "number"], name="one_row_per_build_shard")
        ]

    def __str__(self) -> str:
        return f"shard {self.number} of {self.index_name} ({self.status})"
