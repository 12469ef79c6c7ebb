"""The steps of a run that take time: each is one progress bar of the measuring engine, the
step the run page shows while it runs, and a line of the run's timings (what the form's cost
estimate is based on)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Step(models.TextChoices):
    """value: the progress bar's label on a console; label: the run page's words."""

    EMBED_IMAGES = "embed query images", _("Reading and embedding the query images")
    SEARCH_IMAGES = "search by image", _("Searching the index with each query image")
    EMBED_CLASSES = "embed class names", _("Embedding the class names")
    SEARCH_CLASSES = "search by class name", _("Searching the index with each class name")
    DESCRIBE = "describe images", _("Describing the sampled images")
