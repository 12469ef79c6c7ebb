"""The collection's pages and files: the collections page, image files and thumbnails."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from search.catalog import selectors
from search.catalog.models import Image
from search.catalog.services import thumbnail_jpeg
from search.index.selectors import index_status
from search.web.pages import login_or_token_required

IMAGE_CACHE_SECONDS = 24 * 3600  # dataset files never change under the same id


def _image_path(pk: int) -> Path:
    try:
        return selectors.image_file(image_id=pk)
    except Image.DoesNotExist:
        raise Http404("No such image.") from None
    except FileNotFoundError:
        raise Http404("Image file not found.") from None


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
    path = _image_path(pk)
    try:
        jpeg = thumbnail_jpeg(path=path)
    except OSError:
        raise Http404("Image file cannot be read.") from None
    response = HttpResponse(jpeg, content_type="image/jpeg")
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


@require_GET
def collections(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "search/collections.html",
        {"datasets": selectors.dataset_overview(), "index": index_status()},
    )
