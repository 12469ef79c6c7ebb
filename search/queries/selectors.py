"""Reads of a user's search history (always scoped to its owner)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Prefetch, Q, QuerySet

from search.catalog.models import ImageClass
from search.languages import PAGE_LANGUAGE_NAMES, language_name
from search.queries.models import SearchQuery, SearchResult
from search.queries.routing import OTHER

HISTORY_TEXT_MAX_LENGTH = 100  # characters of a history search: a few words, never a document
ANY_CLASS = "*"  # the history filter "any class filter", beside one class's wnid
USED_CLASSES_MAX = 500  # class filters offered in the history filter (a dataset has ~200)


@dataclass(frozen=True)
class HistoryFilter:
    """What the history list is narrowed to; empty fields narrow nothing."""

    text: str = ""  # the query text contains it, case-insensitively
    kind: str = ""  # a SearchQuery.Kind
    class_filter: str = ""  # a wnid the query was filtered by, or ANY_CLASS

    @property
    def active(self) -> bool:
        return bool(self.text or self.kind or self.class_filter)


def query_history(*, user, where: HistoryFilter | None = None) -> QuerySet[SearchQuery]:
    """The user's own queries, newest first, with what the history list shows; `where`
    narrows them (text contains, kind, class filter used)."""
    queries = SearchQuery.objects.filter(user=user)
    if where is not None:
        if where.text:
            queries = queries.filter(text__icontains=where.text)
        if where.kind:
            queries = queries.filter(kind=where.kind)
        if where.class_filter == ANY_CLASS:
            queries = queries.filter(filters__has_key="class")
        elif where.class_filter:
            queries = queries.filter(filters__class=where.class_filter)
    return (
        queries.select_related("source_image__image_class")
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


def class_names(wnids) -> dict[str, str]:
    """wnid -> class name in the page language for the class filters in `wnids`, in one query
    (an unknown wnid, e.g. of a dataset since removed, is left out: callers show the wnid)."""
    wanted = {w for w in wnids if isinstance(w, str) and w}
    if not wanted:
        return {}
    classes = ImageClass.objects.filter(wnid__in=wanted).only(
        "wnid", "name", "names", "translations"
    )
    return {c.wnid: c.display_name for c in classes}


DETECT = ""  # the search form's query language "Detect automatically" (language=None)


# The page languages by the names the search form's language menu gives them.
@dataclass(frozen=True)
class QueryReading:
    """How a text query was read (search.queries.routing), as its page tells it."""

    language: str  # ISO 639-1 code
    language_name: str  # in the page language
    chosen: bool  # the user chose the language (else it was detected)
    route: str  # "clip" | "multilingual" | "translate"; "" where none was stored
    searched: str  # what the encoder got, where it is not the text as typed; else ""
    # (code, name) of the page languages to search it again as, with one click
    alternatives: tuple[tuple[str, str], ...]

    @property
    def menu_choice(self) -> str:
        """The search form's query language that reads the text this way again: DETECT for
        a detected language, OTHER for a chosen one that is not a page language."""
        if not self.chosen:
            return DETECT
        return self.language if self.language in PAGE_LANGUAGE_NAMES else OTHER


def query_reading(query: SearchQuery) -> QueryReading | None:
    """How `query` was read; None for image queries and text queries stored before queries
    had a language."""
    if query.kind != SearchQuery.Kind.TEXT or not query.language:
        return None
    searched = " ".join(query.embedded_text.split())
    if searched.casefold() == " ".join(query.text.split()).casefold():
        searched = ""
    return QueryReading(
        language=query.language,
        language_name=language_name(query.language),
        chosen=query.language_chosen,
        route=query.route,
        searched=searched,
        alternatives=tuple(
            (code, str(name))
            for code, name in PAGE_LANGUAGE_NAMES.items()
            if code != query.language
        ),
    )


def label_filters(queries) -> None:
    """Sets on each query what pages show of it: `class_filter_name` (the class's name in
    the page language, its wnid when the class is gone, "" without a class filter),
    `min_similarity` (the cosine cutoff, 0 to 1, or None) and `reading` (query_reading),
    with one lookup of class names for all of them."""
    queries = list(queries)
    names = class_names(q.filters.get("class") for q in queries)
    for query in queries:
        wnid = query.filters.get("class")
        query.class_filter_name = names.get(wnid, wnid) if wnid else ""
        cutoff = query.filters.get("min_similarity")  # as services.query_filters stores it
        number = isinstance(cutoff, int | float) and not isinstance(cutoff, bool)
        query.min_similarity = float(cutoff) if number else None
        query.reading = query_reading(query)


def used_class_filters(*, user) -> list[tuple[str, str]]:
    """(wnid, name) of each class the user's queries were filtered by, sorted by name as a
    person reads it (case-insensitive)."""
    wnids = (
        SearchQuery.objects.filter(user=user, filters__has_key="class")
        .values_list("filters__class", flat=True)
        .distinct()
        .order_by()[:USED_CLASSES_MAX]
    )
    wnids = [w for w in wnids if isinstance(w, str) and w]
    names = class_names(wnids)
    return sorted(((w, names.get(w, w)) for w in wnids), key=lambda c: (c[1].casefold(), c[0]))


@dataclass(frozen=True)
class HistorySize:
    queries: int
    uploads: int


def history_size(*, user) -> HistorySize:
    """How many queries, and uploaded images among them, "delete all history" would remove."""
    counts = SearchQuery.objects.filter(user=user).aggregate(
        queries=Count("id"), uploads=Count("id", filter=~Q(uploaded_image=""))
    )
    return HistorySize(queries=counts["queries"], uploads=counts["uploads"])


def get_query(*, user, query_id: int) -> SearchQuery:
    """One of the user's queries; another user's id is SearchQuery.DoesNotExist, as for an id
    that does not exist (a 404, never a 403)."""
    return SearchQuery.objects.select_related("source_image").get(pk=query_id, user=user)


def query_results(query: SearchQuery) -> QuerySet[SearchResult]:
    """The results of a query already read through get_query (so its owner's), best first."""
    return query.results.select_related("image__image_class", "image__dataset").order_by("rank")


RESULTS_PAGE_SIZE = 20  # result cards shown at once; "Load more" brings the next ones


@dataclass(frozen=True)
class ResultsPage:
    """Some of a query's results, by rank: `results` are ranks first..last of `total`."""

    results: list[SearchResult]
    number: int  # 1-based
    total: int

    @property
    def shown(self) -> int:
        """How many results pages 1 to `number` hold together."""
        return min(self.number * RESULTS_PAGE_SIZE, self.total)

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.shown < self.total else None

    @property
    def next_rank(self) -> int:
        """The rank the next page starts at."""
        return self.shown + 1


def results_page(query: SearchQuery, *, number: int, through: bool = False) -> ResultsPage:
    """Page `number` of a query's results (RESULTS_PAGE_SIZE each), best first; `through`:
    pages 1 to `number` together (a page without JavaScript shows what "Load more" added).
    A number past the last page is the last page."""
    total = query.results.count()
    last = max(1, -(-total // RESULTS_PAGE_SIZE))
    number = min(max(1, number), last)
    start = 0 if through else (number - 1) * RESULTS_PAGE_SIZE
    results = list(query_results(query)[start : number * RESULTS_PAGE_SIZE])
    return ResultsPage(results=results, number=number, total=total)
