"""The collection's pages and files: the collections page, image files and thumbnails."""

from __future__ import annotations

import io
import mimetypes

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET
from PIL import Image as PILImage

from search.catalog.models import Image
from search.catalog.selectors import dataset_overview, image_file_path
from search.index.selectors import index_status
from search.web.pages import login_or_token_required

THUMBNAIL_SIDE = 160  # px: a crisp grid cell on high-density screens


IMAGE_CACHE_SECONDS = 24 * 3600  # dataset files never change under the same id


def _dataset_image(pk: int) -> tuple[Image, object]:
    image = get_object_or_404(Image.objects.select_related("dataset"), pk=pk)
    try:
        path = image_file_path(image)
    except FileNotFoundError:
        raise Http404("Image file not found.") from None
    if not path.is_file():
        raise Http404("Image file not found.")
    return image, path


@login_or_token_required
@require_GET
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    _, path = _dataset_image(pk)
    content_type = mimetypes.guess_type(path.name.lower())[0] or "application/octet-stream"
    response = FileResponse(path.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


@login_or_token_required
@require_GET
def image_thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    _, path = _dataset_image(pk)
    try:
        with PILImage.open(path) as img:
            thumb = img.convert("RGB")
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # shrinks large images, never enlarges
    except OSError:
        raise Http404("Image file cannot be read.") from None
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=85)
    response = HttpResponse(buf.getvalue(), content_type="image/jpeg")
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


@require_GET
def collections(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "search/collections.html",
        {"datasets": dataset_overview(), "index": index_status()},
    )
