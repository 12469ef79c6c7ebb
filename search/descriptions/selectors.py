"""Reads of descriptions (scoped to their owner) and whether they can be written."""

from __future__ import annotations

from django.db.models import QuerySet

from search.catalog.models import Image
from search.descriptions.models import Description
from search.ml.registry import describer_enabled
from search.queries.models import SearchQuery


def get_description(*, user, description_id: int) -> Description:
    """One of the user's descriptions (through its query); another user's id is
    Description.DoesNotExist, as for an id that does not exist (a 404, never a 403)."""
    return Description.objects.select_related("query", "image__image_class").get(
        pk=description_id, query__user=user
    )


def query_descriptions(*, user, query: SearchQuery) -> QuerySet[Description]:
    """The descriptions of one of the user's queries, newest first (none for another user's)."""
    return (
        Description.objects.filter(query=query, query__user=user)
        .select_related("image__image_class")
        .order_by("-created_at", "-id")
    )


def latest_descriptions(*, user, query: SearchQuery) -> dict[int | None, Description]:
    """The newest description of each image of one of the user's queries, by image id (None:
    the query's upload): what a results page shows, one card per image."""
    latest: dict[int | None, Description] = {}
    for description in query_descriptions(user=user, query=query):
        latest.setdefault(description.image_id, description)
    return latest


def descriptions_enabled() -> bool:
    """Whether Describe buttons are shown: the one decision, `search.ml.registry`'s."""
    return describer_enabled()


def image_descriptions(*, user, image: Image) -> QuerySet[Description]:
    """The user's own descriptions of a collection image (through their queries), newest
    first; never another user's."""
    return (
        Description.objects.filter(query__user=user, image=image)
        .select_related("image__image_class")
        .order_by("-created_at", "-id")
    )
