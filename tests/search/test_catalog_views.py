"""The collection's pages and files: dataset images, thumbnails, who may fetch them."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from PIL import Image as PILImage

from search.catalog.models import Image
from search.queries.models import SearchQuery
from tests.search.test_views import search, upload

pytestmark = pytest.mark.django_db


def test_dataset_image_file_and_thumbnail(auth_client, search_index):
    image = Image.objects.filter(split="val").first()
    response = auth_client.get(reverse("search:image-file", args=[image.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == (search_index / image.path).read_bytes()
    assert "max-age=86400" in response["Cache-Control"]
    thumb = auth_client.get(reverse("search:image-thumb", args=[image.pk]))
    assert thumb["Content-Type"] == "image/jpeg"
    assert "max-age=86400" in thumb["Cache-Control"]
    assert PILImage.open(io.BytesIO(thumb.content)).size == (160, 160)  # 64 px, upscaled


def test_the_file_url_is_image_file_and_the_image_url_is_its_page(auth_client, search_index):
    image = Image.objects.first()
    assert reverse("search:image-file", args=[image.pk]) == f"/images/{image.pk}/file/"
    page = auth_client.get(f"/images/{image.pk}/")
    assert page["Content-Type"].startswith("text/html")


def test_a_large_image_is_shrunk_to_fit_the_thumbnail_side(tmp_path):
    from search.catalog.services import thumbnail_jpeg

    path = tmp_path / "wide.png"
    PILImage.new("RGBA", (640, 320), (10, 20, 30, 255)).save(path)
    thumb = PILImage.open(io.BytesIO(thumbnail_jpeg(path=path)))
    assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "RGB", (160, 80))  # 640 / 4


def test_image_views_need_login_and_known_ids(auth_client, search_index):
    from django.test import Client

    image = Image.objects.first()
    for name in ("search:image", "search:image-file", "search:image-thumb"):
        assert Client().get(reverse(name, args=[image.pk])).status_code == 302
    for name in ("search:image", "search:image-file", "search:image-thumb"):
        assert auth_client.get(reverse(name, args=[999999])).status_code == 404
    assert auth_client.get("/images/../../etc/passwd/").status_code == 404


def test_image_row_pointing_outside_its_dataset_is_404(auth_client, search_index):
    image = Image.objects.first()
    Image.objects.filter(pk=image.pk).update(path="../../../../etc/hostname")
    assert auth_client.get(reverse("search:image-file", args=[image.pk])).status_code == 404
    assert auth_client.get(reverse("search:image-thumb", args=[image.pk])).status_code == 404


def test_file_views_accept_an_api_token(search_index, user):
    from django.test import Client
    from rest_framework.authtoken.models import Token

    image = Image.objects.first()
    key = Token.objects.create(user=user).key
    url = reverse("search:image-thumb", args=[image.pk])
    assert Client().get(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert Client().get(url, HTTP_AUTHORIZATION="Token wrong").status_code == 302


def test_decompression_bomb_is_refused_before_decoding(auth_client, search_index):
    buf = io.BytesIO()
    PILImage.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 M pixels in a few kB
    assert len(buf.getvalue()) < 100_000
    response = search(auth_client, image=upload(buf.getvalue(), "bomb.png"))
    assert response.status_code == 400
    assert "the limit is 40,000,000 pixels" in response.content.decode()


def test_html_named_png_is_refused_and_a_polyglot_is_served_as_an_image(
    auth_client, user, search_index
):
    html = b"<html><script>alert(1)</script></html>"
    assert search(auth_client, image=upload(html, "x.png")).status_code == 400
    # a real JPEG with a script appended: a valid image, so accepted -- and never sniffed as HTML
    jpeg = (search_index / Image.objects.first().path).read_bytes()
    search(auth_client, image=upload(jpeg + html, "polyglot.jpg"))
    query = SearchQuery.objects.get(user=user)
    served = auth_client.get(reverse("search:query-upload", args=[query.pk]))
    assert served["Content-Type"] == "image/jpeg"
    assert served["X-Content-Type-Options"] == "nosniff"
