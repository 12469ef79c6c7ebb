"""Reads of a user's search history (always scoped to its owner)."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from search.queries.models import SearchQuery, SearchResult


def query_history(*, user) -> QuerySet[SearchQuery]:
    """The user's own queries, newest first, with what the history list shows."""
    return (
        SearchQuery.objects.filter(user=user)
        .select_related("source_image__image_class")
        .annotate(result_count=Count("results"))
        .prefetch_related(
            Prefetch(
                "results",
                queryset=SearchResult.objects.filter(rank=1).select_related(
                    "image__image_class", "image__dataset"
                ),
                to_attr="top_results",
            )
        )
        .order_by("-created_at", "-id")
    )


def get_query(*, user, query_id: int) -> SearchQuery:
    """One of the user's queries; another user's id is SearchQuery.DoesNotExist, as for an id
    that does not exist (a 404, never a 403)."""
    return SearchQuery.objects.select_related("source_image").get(pk=query_id, user=user)


def query_results(query: SearchQuery) -> QuerySet[SearchResult]:
    """The results of a query already read through get_query (so its owner's), best first."""
    return query.results.select_related("image__image_class", "image__dataset").order_by("rank")
