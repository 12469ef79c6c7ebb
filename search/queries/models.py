"""Search history: each query a user ran and the images it found."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from search.catalog.models import Image


def upload_path(query: SearchQuery, filename: str) -> str:
    """Each upload in its owner's folder under a fresh name: never a shared temporary path."""
    suffix = Path(filename).suffix.lower()[:8]
    return f"uploads/{query.user_id}/{uuid.uuid4().hex}{suffix}"


TEXT_MAX_LENGTH = 500  # characters of a text query: a sentence or two, not a document


class SearchQuery(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", _("text")
        IMAGE = "image", _("uploaded image")
        SIMILAR = "similar", _("more like this")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="search_queries"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.CharField(max_length=TEXT_MAX_LENGTH, blank=True)
    uploaded_image = models.ImageField(upload_to=upload_path, blank=True, max_length=255)
    source_image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="similar_queries"
    )
    # How a text query was read (search.queries.routing); blank for image queries.
    language = models.CharField(
        max_length=16, blank=True, help_text="ISO 639-1 code of the language the text was read in."
    )
    language_chosen = models.BooleanField(
        default=False, help_text="On: the user chose the language; off: it was detected."
    )
    route = models.CharField(
        max_length=16, blank=True, help_text="Text route that embedded it: clip, multilingual..."
    )
    embedded_text = models.CharField(
        max_length=TEXT_MAX_LENGTH,
        blank=True,
        help_text="What the encoder got: the subject without leading search verbs, or its "
        "English translation (before CLIP's prompt template).",
    )
    top_k = models.PositiveSmallIntegerField()
    filters = models.JSONField(default=dict, blank=True)
    encoder = models.CharField(max_length=255, help_text="Model that embedded the query.")
    index_name = models.CharField(max_length=100)
    index_built_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "search_searchquery"  # the table it had in the search app
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
        db_table = "search_searchresult"  # the table it had in the search app
        ordering = ["query", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["query", "rank"], name="unique_rank_per_query")
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.image_id} ({self.score:.3f})"
