"""Search use cases: run a query, save it with its results in the user's history.

Each function validates what it is given, runs the search through the published index, and
stores the `SearchQuery` and its `SearchResult`s in one transaction: two INSERTs (the results
in one bulk statement), with an uploaded file written before it, so that the database's write
lock (SQLite has one) is held for those two statements only. The query returned carries
`saved_results`, its results as stored with their images (class and dataset) read, so that
the answer shows them without reading them back.
"""

from __future__ import annotations

import time

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from PIL import Image as PILImage

from search.catalog.models import Image, ImageClass
from search.catalog.selectors import get_image, image_file_path
from search.errors import InvalidInput, NotFound
from search.index.service import IndexService, get_index_service
from search.queries.models import TEXT_MAX_LENGTH, SearchQuery, SearchResult
from search.queries.retrieval import QueryVector, embed_image, embed_text, nearest_images
from search.queries.routing import normalise_language
from search.queries.uploads import normalise_upload


class SearchInputError(InvalidInput, ValueError):
    """A query that cannot run as given (bad k, unknown class...); one line for the user."""


class NoSuchImage(NotFound):
    """The collection image asked for is not there, or its file cannot be read."""


# The one rule for a text and an image sent together (the search page, its no-JS form and the
# API): refused, never one of them silently dropped; CLIP embeds one query, not a blend.
TEXT_AND_IMAGE = gettext_lazy(
    "Search by a text or by an image, not both at once: remove the image to search for the "
    "text, or clear the text to search by the image."
)


def clamp_top_k(top_k: int | None) -> int:
    top_k = settings.TINYRAG_TOP_K_DEFAULT if top_k is None else int(top_k)
    if not 1 <= top_k <= settings.TINYRAG_TOP_K_MAX:
        raise SearchInputError(
            _("top_k must be between 1 and %(max)s.") % {"max": settings.TINYRAG_TOP_K_MAX}
        )
    return top_k


def check_min_similarity(min_similarity: float | None) -> float | None:
    """A cosine cutoff between 0 and 1 (None: keep every result)."""
    if min_similarity is None:
        return None
    value = float(min_similarity)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise SearchInputError(
            _("The minimum similarity must be between 0 and 1 (0%% and 100%%).") % {}
        )
    return value


def query_filters(*, class_filter: str | None, min_similarity: float | None) -> dict:
    """What SearchQuery.filters stores: only the filters that were set."""
    filters: dict = {}
    if class_filter:
        filters["class"] = class_filter
    if min_similarity is not None:
        filters["min_similarity"] = min_similarity
    return filters


def _allowed_ids(index: IndexService, class_filter: str | None) -> np.ndarray | None:
    if not class_filter:
        return None
    manifest = index.manifest
    try:
        image_class = ImageClass.objects.get(dataset__name=manifest.dataset, wnid=class_filter)
    except ImageClass.DoesNotExist:
        raise SearchInputError(
            _("Unknown class %(wnid)s.") % {"wnid": repr(class_filter)}
        ) from None
    ids = Image.objects.filter(image_class=image_class, split__in=manifest.splits)
    return np.fromiter(ids.values_list("id", flat=True), dtype=np.int64)


def _run(
    *,
    user,
    kind: str,
    embed,
    top_k: int | None,
    class_filter: str | None,
    min_similarity: float | None = None,
    exclude_ids: frozenset[int] = frozenset(),
    **fields,
) -> SearchQuery:
    k = clamp_top_k(top_k)
    cutoff = check_min_similarity(min_similarity)
    started = time.perf_counter()
    index = get_index_service()
    manifest = index.manifest  # raises a clear SearchIndexError when there is no index
    allowed = _allowed_ids(index, class_filter)
    query_vector: QueryVector = embed(index)
    hits = nearest_images(
        query_vector.vector, k=k, index=index, exclude_ids=exclude_ids, allowed_ids=allowed
    )
    if cutoff is not None:  # best first: what passes is a prefix, its ranks stay 1, 2, ...
        hits = [h for h in hits if h.score >= cutoff]
    upload = fields.pop("upload", None)
    read = query_vector.read
    if read is not None:  # a text query: how it was read and embedded
        fields.update(
            language=read.language,
            language_chosen=read.chosen,
            route=read.route.value,
            embedded_text=query_vector.embedded_text[:TEXT_MAX_LENGTH],
        )
    query = SearchQuery(
        user=user,
        kind=kind,
        top_k=k,
        filters=query_filters(class_filter=class_filter, min_similarity=cutoff),
        encoder=query_vector.encoder,
        index_name=manifest.name,
        index_built_at=manifest.created,
        duration_ms=0.0,
        **fields,
    )
    if upload is not None:  # written before the transaction: file I/O holds no write lock
        name, data = upload
        query.uploaded_image.save(name, ContentFile(data), save=False)
    results = [SearchResult(query=query, rank=h.rank, image=h.image, score=h.score) for h in hits]
    try:
        with transaction.atomic():
            query.duration_ms = round((time.perf_counter() - started) * 1000, 2)
            query.save(force_insert=True)
            SearchResult.objects.bulk_create(results)
    except BaseException:
        if upload is not None:  # no row holds the file: it goes too
            query.uploaded_image.delete(save=False)
        raise
    query.saved_results = results
    return query


def text_search(
    *,
    user,
    text: str,
    language: str | None = None,
    top_k: int | None = None,
    class_filter: str | None = None,
    min_similarity: float | None = None,
) -> SearchQuery:
    """Search by a text, read in `language` (None: detected; search.queries.routing) and
    embedded on that language's route."""
    text = " ".join(text.split())
    if not text:
        raise SearchInputError(_("Type something to search for."))
    if len(text) > TEXT_MAX_LENGTH:
        raise SearchInputError(
            _("The text is longer than %(limit)s characters.") % {"limit": TEXT_MAX_LENGTH}
        )
    normalise_language(language)  # an unknown language is refused before any model loads
    return _run(
        user=user,
        kind=SearchQuery.Kind.TEXT,
        text=text,
        top_k=top_k,
        class_filter=class_filter,
        min_similarity=min_similarity,
        embed=lambda index: embed_text(text, index, language=language),
    )


def image_search(
    *,
    user,
    data: bytes,
    top_k: int | None = None,
    class_filter: str | None = None,
    min_similarity: float | None = None,
) -> SearchQuery:
    """Search by an uploaded file (raises UploadError for anything but a valid image).

    What is embedded and stored is the normalised upload (shrunk, re-encoded without its
    metadata), never the bytes as sent.
    """
    upload = normalise_upload(data)
    return _run(
        user=user,
        kind=SearchQuery.Kind.IMAGE,
        top_k=top_k,
        class_filter=class_filter,
        min_similarity=min_similarity,
        upload=(f"query{upload.suffix}", upload.data),
        embed=lambda index: embed_image(upload.image, index),
    )


def similar_search(
    *,
    user,
    image_id: int,
    top_k: int | None = None,
    class_filter: str | None = None,
    min_similarity: float | None = None,
) -> SearchQuery:
    """ "More like this": the dataset image as the query, itself left out of the results."""
    try:
        source = get_image(image_id=image_id)
    except Image.DoesNotExist:
        raise NoSuchImage(_("No image with id %(id)s.") % {"id": image_id}) from None
    try:
        with PILImage.open(image_file_path(source)) as img:
            img.load()
    except OSError:
        raise NoSuchImage(
            _("The file of image %(id)s cannot be read.") % {"id": image_id}
        ) from None
    return _run(
        user=user,
        kind=SearchQuery.Kind.SIMILAR,
        source_image=source,
        top_k=top_k,
        class_filter=class_filter,
        min_similarity=min_similarity,
        exclude_ids=frozenset({source.pk}),
        embed=lambda index: embed_image(img, index),
    )


def rerun(*, query: SearchQuery) -> SearchQuery:
    """The same query again, against the index of today; a new history entry."""
    common = {
        "user": query.user,
        "top_k": query.top_k,
        "class_filter": query.filters.get("class"),
        "min_similarity": query.filters.get("min_similarity"),
    }
    if query.kind == SearchQuery.Kind.TEXT:
        # a language the user chose stays chosen; a detected one is detected again
        language = query.language if query.language_chosen and query.language else None
        return text_search(text=query.text, language=language, **common)
    if query.kind == SearchQuery.Kind.SIMILAR:
        if query.source_image_id is None:
            raise SearchInputError(_("The source image of this query no longer exists."))
        try:
            return similar_search(image_id=query.source_image_id, **common)
        except NoSuchImage as exc:  # the query is there: what it needs is not (a 400, not a 404)
            raise SearchInputError(str(exc)) from None
    try:
        with query.uploaded_image.open("rb") as f:
            data = f.read()
    except (OSError, ValueError):
        raise SearchInputError(_("The uploaded image of this query is no longer stored.")) from None
    return image_search(data=data, **common)


def delete_query(*, query: SearchQuery) -> None:
    """The query, its results and descriptions; its upload file goes once the delete commits
    (search/queries/signals.py, as for any deleted query: a deleted user's too)."""
    query.delete()


def delete_history(*, user) -> int:
    """All of the user's queries (and their uploads, as delete_query); how many there were."""
    _, deleted = SearchQuery.objects.filter(user=user).delete()
    return deleted.get(SearchQuery._meta.label, 0)
