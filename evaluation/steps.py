"""The steps of a run that take time: each is one progress bar of the measuring engine, the
step the run page shows while it runs, and a line of the run's timings (what the form's cost
estimate is based on)."""

from __future__ import annotations

from django.db import models


class Step(models.TextChoices):
    """value: the progress bar's label on a console; label: the run page's words."""

    EMBED_IMAGES = "embed query images", "Reading and embedding the query images"
    SEARCH_IMAGES = "search by image", "Searching the index with each query image"
    EMBED_CLASSES = "embed class names", "Embedding the class names"
    SEARCH_CLASSES = "search by class name", "Searching the index with each class name"
    DESCRIBE = "describe images", "Describing the sampled images"
