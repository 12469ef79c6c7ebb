"""Dataset metadata: the database is the source of truth for what the collection holds."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from search.datasets.roots import root_problem


class Dataset(models.Model):
    class Source(models.TextChoices):
        TINYIMAGENET = "tinyimagenet", "TinyImageNet"
        IMAGEFOLDER = "imagefolder", "Image folder"

    name = models.SlugField(max_length=100, unique=True)
    root = models.CharField(max_length=1024, help_text="Absolute path of the prepared dataset.")
    source = models.CharField(max_length=32, choices=Source.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The admin may not point a dataset at any folder of the server (its files are served
        to every user): the root must lie where search/datasets/roots.py allows."""
        super().clean()
        problem = root_problem(self.root) if self.root else None
        if problem:
            raise ValidationError({"root": problem})


class ImageClass(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="classes")
    wnid = models.CharField("WordNet id", max_length=64)
    name = models.CharField(max_length=255, help_text="The first synonym.")
    names = models.JSONField(default=list, help_text="All synonyms, in words.txt order.")

    class Meta:
        ordering = ["dataset", "wnid"]
        verbose_name_plural = "image classes"
        constraints = [
            models.UniqueConstraint(fields=["dataset", "wnid"], name="unique_class_per_dataset")
        ]
        indexes = [models.Index(fields=["dataset", "name"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.wnid})"


class Image(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "train"
        VAL = "val", "val"
        TEST = "test", "test"

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

    class Meta:
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


def upload_path(query: SearchQuery, filename: str) -> str:
    """Each upload in its owner's folder under a fresh name: never a shared temporary path."""
    suffix = Path(filename).suffix.lower()[:8]
    return f"uploads/{query.user_id}/{uuid.uuid4().hex}{suffix}"


class SearchQuery(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "text"
        IMAGE = "image", "uploaded image"
        SIMILAR = "similar", "more like this"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="search_queries"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.CharField(max_length=500, blank=True)
    uploaded_image = models.ImageField(upload_to=upload_path, blank=True, max_length=255)
    source_image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="similar_queries"
    )
    top_k = models.PositiveSmallIntegerField()
    filters = models.JSONField(default=dict, blank=True)
    encoder = models.CharField(max_length=255, help_text="Model that embedded the query.")
    index_name = models.CharField(max_length=100)
    index_built_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "search queries"
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.text or self.source_image_id or 'upload'}"


class SearchResult(models.Model):
    query = models.ForeignKey(SearchQuery, on_delete=models.CASCADE, related_name="results")
    rank = models.PositiveSmallIntegerField()
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()

    class Meta:
        ordering = ["query", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["query", "rank"], name="unique_rank_per_query")
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.image_id} ({self.score:.3f})"


class Description(models.Model):
    """A generated description of a result image (or of the query's own upload)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    class Context(models.TextChoices):
        RETRIEVED = "retrieved", "labels of retrieved neighbours"
        NONE = "none", "image only"

    query = models.ForeignKey(SearchQuery, on_delete=models.CASCADE, related_name="descriptions")
    image = models.ForeignKey(
        Image,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty: the query's uploaded image.",
    )
    image_key = models.CharField(
        max_length=80, help_text="image:<id> or upload:<sha256>; identical requests share it."
    )
    generates = models.BooleanField(
        default=True,
        help_text="Off: shares another row's generation (reused_from) instead of running one.",
    )
    generation_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of what identical requests share (search.services.describe).",
    )
    backend = models.CharField(max_length=32)
    model = models.CharField(max_length=255)
    prompt_version = models.CharField(max_length=32)
    context_mode = models.CharField(max_length=16, choices=Context.choices)
    context = models.JSONField(default=dict, blank=True)
    prompt = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    text = models.TextField(blank=True)
    tokens = models.PositiveIntegerField(default=0)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    reused_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The generation this row shares: a finished one, or one still in flight.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["image_key", "context_mode", "model", "prompt_version", "status"],
                name="description_reuse_idx",
            ),
            models.Index(fields=["status", "updated_at"], name="description_stall_idx"),
            models.Index(fields=["status", "created_at"], name="description_queue_idx"),
        ]
        constraints = [
            # Concurrent identical requests cannot start two generations.
            models.UniqueConstraint(
                fields=["generation_key"],
                condition=models.Q(status__in=["queued", "running"], generates=True),
                name="one_generation_in_flight",
            )
        ]

    def __str__(self) -> str:
        return f"{self.image_key} [{self.status}]"

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}
