"""Reads of descriptions (scoped to their owner) and whether they can be written."""

from __future__ import annotations


def get_description(*, user, description_id: int):
    """One of the user's descriptions (through its query); others' are not found."""
    from search.descriptions.models import Description

    return Description.objects.select_related("query", "image__image_class").get(
        pk=description_id, query__user=user
    )


def descriptions_enabled() -> bool:
    from django.conf import settings

    return settings.TINYRAG_VLM_BACKEND != "none"
