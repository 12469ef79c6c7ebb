"""Generated descriptions of images, and the queue they wait in."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from search.catalog.models import Image
from search.ops.jobs import FINISHED, JobStatus
from search.queries.models import SearchQuery


class Description(models.Model):
    """A generated description of a result image (or of the query's own upload)."""

    Status = JobStatus  # queued -> running -> done | failed (search.ops.jobs)

    class Context(models.TextChoices):
        RETRIEVED = "retrieved", _("labels of retrieved neighbours")
        NONE = "none", _("image only")

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
        help_text="sha256 of what identical requests share (search.descriptions.services).",
    )
    backend = models.CharField(max_length=32)
    model = models.CharField(max_length=255)
    prompt_version = models.CharField(max_length=32)
    context_mode = models.CharField(max_length=16, choices=Context.choices)
    language = models.CharField(
        max_length=8,
        default="en",
        help_text="Page language (search/languages.py) it is written in; reused only in it.",
    )
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
        db_table = "search_description"  # the table it had in the search app
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=[
                    "image_key",
                    "context_mode",
                    "model",
                    "prompt_version",
                    "language",
                    "status",
                ],  # fmt: skip
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
        return self.status in FINISHED
