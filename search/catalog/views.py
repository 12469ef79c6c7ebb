"""The collection's pages and files: the collections page, a class's page, an image's page,
image files and thumbnails."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.core.paginator import InvalidPage, Page, Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from search.catalog import selectors
from search.catalog.models import Dataset, Image, ImageClass
from search.catalog.services import THUMBNAIL_SIDE, THUMBNAIL_SIZES, thumbnail_jpeg
from search.descriptions.selectors import descriptions_enabled, image_descriptions
from search.index.selectors import index_status, is_published
from search.languages import ENGLISH, INDONESIAN, PAGE_LANGUAGES, page_language
from search.ops.health import first_missing_step
from search.queries.models import SearchQuery
from search.queries.selectors import get_query
from search.web import PK_MAX
from search.web.pages import login_or_token_required

IMAGE_CACHE_SECONDS = 24 * 3600  # dataset files never change under the same id
CLASS_PAGE_SIZE = 24  # images per class page (and per "Load more"): four rows of six
DESCRIPTIONS_SHOWN = 20  # of one image, on its page: the newest; the rest are in the history
OPEN_CLASS_LIST_UP_TO = 24  # a dataset with more classes shows them collapsed


def _image_path(pk: int) -> Path:
    try:
        return selectors.image_file(image_id=pk)
    except Image.DoesNotExist:
        raise Http404(_("No such image.")) from None
    except FileNotFoundError:
        raise Http404(_("Image file not found.")) from None


@login_or_token_required
@require_GET
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    path = _image_path(pk)
    content_type = mimetypes.guess_type(path.name.lower())[0] or "application/octet-stream"
    response = FileResponse(path.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


@login_or_token_required
@require_GET
def image_thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    size = _thumbnail_size(request.GET.get("size"))
    if size is None:
        allowed = ", ".join(map(str, THUMBNAIL_SIZES))
        message = _("The thumbnail size must be one of %(sizes)s (pixels).") % {"sizes": allowed}
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    path = _image_path(pk)
    try:
        jpeg = thumbnail_jpeg(path=path, size=size)
    except OSError:
        raise Http404(_("Image file cannot be read.")) from None
    response = HttpResponse(jpeg, content_type="image/jpeg")
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


def _thumbnail_size(raw: str | None) -> int | None:
    """The `size` a thumbnail URL asks for (none: the default); None when it is not allowed."""
    if raw is None:
        return THUMBNAIL_SIDE
    return int(raw) if raw in {str(size) for size in THUMBNAIL_SIZES} else None


# --- the collections page -------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetCard:
    dataset: Dataset  # from dataset_overview(): class_count, train/val/test_count
    classes: list[ImageClass]  # with image_count, sorted for people (case-insensitive)
    syncs: selectors.SyncOverview = selectors.SyncOverview()

    @property
    def image_count(self) -> int:
        d = self.dataset
        return d.train_count + d.val_count + d.test_count

    @property
    def classes_open(self) -> bool:
        return len(self.classes) <= OPEN_CLASS_LIST_UP_TO

    @property
    def rows(self) -> list[tuple[ImageClass, str]]:
        """Each class with what the page's filter box matches: every name and synonym in
        both page languages and the wnid, lower case."""
        return [(c, _filter_text(c)) for c in self.classes]


def _filter_text(image_class: ImageClass) -> str:
    names = [n for language in PAGE_LANGUAGES for n in image_class.names_in(language)]
    return " ".join([*dict.fromkeys(names), image_class.wnid]).lower()


def _built_at(created_at: str) -> datetime | None:
    try:
        return datetime.fromisoformat(created_at)
    except (TypeError, ValueError):  # a hand-edited manifest: the page leaves the date out
        return None


@require_GET
def collections(request: HttpRequest) -> HttpResponse:
    syncs = selectors.sync_overview()
    cards = [
        DatasetCard(d, list(selectors.class_overview(d)), syncs.get(d.pk, selectors.SyncOverview()))
        for d in selectors.dataset_overview()
    ]
    index = index_status()
    return render(
        request,
        "search/collections.html",
        {
            "cards": cards,
            "index": index,
            "index_built_at": _built_at(index.manifest.created_at) if index.manifest else None,
            "setup_step": first_missing_step(),
        },
    )


@require_GET
def collection_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """One collection's sync status, which the Collections page polls while a sync of it is
    queued or running (the fragment stops polling once none is)."""
    dataset = Dataset.objects.filter(pk=pk).first() if pk <= PK_MAX else None
    if dataset is None:
        raise Http404(_("No such collection."))
    syncs = selectors.sync_overview().get(dataset.pk, selectors.SyncOverview())
    return render(
        request,
        "search/collections.html#sync-status",
        {"d": dataset, "last": syncs.last, "pending": syncs.pending},
    )


# --- a class's page -------------------------------------------------------------------------


def _class_page(request: HttpRequest, image_class: ImageClass) -> Page:
    """The page of the class's images that `?page=` names (1 without one); a 404 that says
    which pages there are for anything else (not a number, 0, past the last)."""
    paginator = Paginator(selectors.class_images(image_class), CLASS_PAGE_SIZE)
    try:
        return paginator.page(request.GET.get("page", 1))
    except InvalidPage:
        raise Http404(
            _("This class has no such page: its images are on pages 1 to %(last)s.")
            % {"last": paginator.num_pages}
        ) from None


def _synonyms(image_class: ImageClass | None) -> list[str]:
    """The class's other names in the page language (the name shown comes first)."""
    if image_class is None:
        return []
    return image_class.names_in()[1:]


def _name_in_other_language(image_class: ImageClass | None) -> dict:
    """`other_name`: the class's name in the page language it is not shown in (English on an
    Indonesian page, Indonesian on an English one) when it has one that differs, else "";
    `other_language`: that language."""
    other = ENGLISH if page_language() == INDONESIAN else INDONESIAN
    if image_class is None:
        return {"other_name": "", "other_language": other}
    name = image_class.name_in(other)
    same = name.casefold() == image_class.display_name.casefold()
    return {"other_name": "" if same else name, "other_language": other}


@require_GET
def class_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        image_class = selectors.get_class(class_id=pk)
    except ImageClass.DoesNotExist:
        raise Http404(_("No such class in the collection.")) from None
    page = _class_page(request, image_class)
    context = {
        "image_class": image_class,
        "synonyms": _synonyms(image_class),
        **_name_in_other_language(image_class),
        "page": page,
        "remaining": page.paginator.count - page.end_index(),  # after this page's images
        "next_count": min(CLASS_PAGE_SIZE, page.paginator.count - page.end_index()),
    }
    if request.htmx:  # "Load more": the next images, and the control for the ones after
        return render(request, "search/class.html#items", context)
    return render(request, "search/class.html", context)


# --- an image's page ------------------------------------------------------------------------


def _query_of_this_image(request: HttpRequest, image: Image) -> SearchQuery | None:
    """The signed-in user's query that `?q=` names, when this image is one of its results
    (or its source); None for anything else: no q, not an id, another user's query, or a
    query this image is not part of (never said apart, so nothing leaks)."""
    raw = request.GET.get("q", "")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= PK_MAX:
        return None
    try:
        query = get_query(user=request.user, query_id=int(raw))
    except SearchQuery.DoesNotExist:
        return None
    if query.source_image_id == image.pk or query.results.filter(image=image).exists():
        return query
    return None


@require_GET
def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        image = selectors.get_image(image_id=pk)
    except Image.DoesNotExist:
        raise Http404(_("No such image in the collection.")) from None
    position = selectors.image_position_in_class(image)
    query = _query_of_this_image(request, image)
    descriptions = image_descriptions(user=request.user, image=image)[:DESCRIPTIONS_SHOWN]
    return render(
        request,
        "search/image.html",
        {
            "image": image,
            "image_class": image.image_class,
            "synonyms": _synonyms(image.image_class),
            **_name_in_other_language(image.image_class),
            "position": position,
            "class_page": (position.number - 1) // CLASS_PAGE_SIZE + 1 if position else None,
            "query": query,
            "descriptions_on": descriptions_enabled(),
            "can_search": is_published(),
            "descriptions": descriptions,
        },
    )
