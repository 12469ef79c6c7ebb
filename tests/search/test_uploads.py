"""Uploads that cost what they weigh: header checks before decoding, a bounded size, every
Pillow format stored as a known type or refused, no metadata kept, request bodies capped, files
deleted with their queries (and their users)."""

from __future__ import annotations

import contextlib
import io
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import RequestDataTooBig
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIRequest
from django.db import transaction
from django.http.multipartparser import MultiPartParserError
from django.test import RequestFactory
from django.urls import reverse
from PIL import ExifTags, ImageCms, ImageFile, ImageOps
from PIL import Image as PILImage
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from search.queries import services as search_service
from search.queries.models import SearchQuery
from search.queries.upload_handlers import RequestBodyLimitHandler
from search.queries.uploads import UploadError, normalise_upload, read_upload

pytestmark = pytest.mark.django_db

MB = 2**20
SPY = b"SpyCam"  # planted in every kind of metadata below


def gradient(size: tuple[int, int], mode: str = "RGB") -> PILImage.Image:
    """A picture with detail (a flat one compresses to nothing and hides resampling)."""
    width, height = size
    img = PILImage.new("RGB", size)
    img.putdata(
        [(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)]
    )
    return img.convert(mode)


def encoded(img: PILImage.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def wide(width: int, height: int) -> bytes:
    return encoded(PILImage.new("L", (width, height)), "PNG")


def sent_photo() -> bytes:
    """A 64x48 JPEG from a phone: maker, GPS position, XMP, ICC profile, a comment, and an
    orientation tag saying it is shown turned a quarter (so 48x64)."""
    exif = PILImage.Exif()
    exif[ExifTags.Base.Make] = SPY.decode()
    exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(
        gradient((64, 48)),
        "JPEG",
        exif=exif,
        icc_profile=icc,
        comment=SPY + b" comment",
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + SPY + b"</x:xmpmeta>",
    )
    with PILImage.open(io.BytesIO(data)) as sent:  # the metadata really is in the file sent
        assert {"exif", "icc_profile", "comment", "xmp"} <= set(sent.info)
        assert sent.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    return data


def assert_no_metadata(data: bytes) -> None:
    assert SPY not in data
    with PILImage.open(io.BytesIO(data)) as stored:
        assert not {"exif", "icc_profile", "comment", "xmp", "XML:com.adobe.xmp"} & set(stored.info)
        assert len(stored.getexif()) == 0
        assert not getattr(stored, "text", {})  # PNG text chunks


def mpo() -> bytes:
    """A multi-picture JPEG (a 3D camera's two views): Pillow opens it as MPO."""
    left, right = (
        gradient((64, 48)),
        gradient((64, 48)).transpose(PILImage.Transpose.FLIP_LEFT_RIGHT),
    )
    data = encoded(left, "MPO", save_all=True, append_images=[right])
    with PILImage.open(io.BytesIO(data)) as img:
        assert (img.format, img.n_frames) == ("MPO", 2)
    return data


# --- dimensions: refused from the header, every accepted image shrunk -------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decoding fails the test: what is refused must be refused from the header."""

    def load(self):
        raise AssertionError(f"decoded a {self.size} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


THIN = "its longer side may be at most 20 times its shorter side."


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((200_000, 1), "The image is 200000x1 pixels; a side may be at most 8,192 pixels."),
        ((1, 400_000), "The image is 1x400000 pixels; a side may be at most 8,192 pixels."),
        ((8193, 1000), "The image is 8193x1000 pixels; a side may be at most 8,192 pixels."),
        (
            (2100, 100),
            "The image is 2100x100 pixels; " + THIN,
        ),
        (
            (50, 1001),
            "The image is 50x1001 pixels; " + THIN,
        ),
    ],
)
def test_a_long_or_thin_image_is_refused_before_decoding(size, message, no_decoding):
    data = wide(*size)
    assert len(data) < 20_000  # a few kB that CLIP's resize would have grown to gigabytes
    with pytest.raises(UploadError) as refused:
        read_upload(data)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("size", "shrunk"),
    [
        ((8192, 1000), (1024, 125)),  # the longest side allowed: 1000 * 1024 / 8192 = 125
        ((2000, 100), (1024, 51)),  # the thinnest allowed, 20:1: 100 * 1024 / 2000 = 51.2
        ((300, 200), (300, 200)),  # small images are never enlarged
    ],
)
def test_an_accepted_image_is_shrunk_to_fit_the_resize_side(size, shrunk):
    image, fmt = read_upload(wide(*size))
    assert (image.size, image.mode, fmt) == (shrunk, "RGB", "PNG")


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch):
    seen = []
    thumbnail = PILImage.Image.thumbnail

    def spy(self, *args, **kwargs):
        seen.append(self.size)
        return thumbnail(self, *args, **kwargs)

    monkeypatch.setattr(PILImage.Image, "thumbnail", spy)
    image, fmt = read_upload(encoded(gradient((3000, 2000)), "JPEG"))
    # 3000x2000 to fit 1024: the target is 1024x683, which JPEG's 1/2 scale (1500x1000)
    # still covers and its 1/4 (750x500) does not
    assert seen == [(1500, 1000)]
    assert (image.size, fmt) == ((1024, 683), "JPEG")


def orientated_png(size: tuple[int, int], mode: str) -> bytes:
    """A large flat PNG of `mode` with an orientation tag saying it is shown turned a quarter;
    the palette image's index 0 (half of it) is transparent."""
    img = PILImage.new("RGB", size, (220, 200, 40))
    img.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))
    options = {}
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    elif mode == "P":
        img = img.quantize(2)
        options["transparency"] = img.getpixel((0, 0))
    else:
        img = img.convert(mode, dither=PILImage.Dither.NONE)  # 1-bit: blue black, yellow white
    exif = PILImage.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return encoded(img, "PNG", exif=exif, **options)


@pytest.mark.parametrize(
    ("mode", "left", "right"),
    [
        ("RGBA", (255, 255, 255), (220, 200, 40)),  # transparency flattened onto white
        ("P", (255, 255, 255), (220, 200, 40)),
        ("1", (0, 0, 0), (255, 255, 255)),
        ("RGB", (30, 30, 200), (220, 200, 40)),
    ],
)
def test_an_image_is_shrunk_before_it_is_turned_upright_or_converted(
    monkeypatch, mode, left, right
):
    import search.queries.uploads

    received = []
    transpose, to_rgb = ImageOps.exif_transpose, search.queries.uploads.to_rgb
    monkeypatch.setattr(
        ImageOps, "exif_transpose", lambda img, **kw: received.append(img.size) or transpose(img)
    )
    monkeypatch.setattr(
        search.queries.uploads, "to_rgb", lambda img: received.append(img.size) or to_rgb(img)
    )
    image, fmt = read_upload(orientated_png((2048, 1536), mode))
    # 2048x1536 fits 1024x768; the two copies (and the white background) are made at that size
    assert received == [(1024, 768), (768, 1024)]
    assert (image.size, image.mode, fmt) == ((768, 1024), "RGB", "PNG")
    # turned a quarter clockwise: the image's left half is now its top half
    assert image.getpixel((384, 100)) == left
    assert image.getpixel((384, 900)) == right


def test_a_palette_image_is_resampled_by_its_colours_not_its_indices():
    # a 1-pixel black and white checkerboard: averaged it is grey, picked from it black or white
    board = PILImage.new("1", (2048, 2048))
    board.putdata([(x + y) % 2 * 255 for y in range(2048) for x in range(2048)])
    for mode in ("1", "P"):
        image, _ = read_upload(encoded(board.convert(mode), "PNG"))
        assert image.size == (1024, 1024)
        assert 100 <= image.getpixel((512, 512))[0] <= 155, mode


def test_a_full_size_decode_holds_one_of_the_decode_slots(monkeypatch, settings):
    from search.queries.uploads import DECODE_SLOTS

    free = []
    load = ImageFile.ImageFile.load

    def spy(self):
        if self.width > settings.TINYRAG_UPLOAD_RESIZE_SIDE:
            free.append(DECODE_SLOTS._value)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    slots = settings.TINYRAG_UPLOAD_DECODE_SLOTS
    assert DECODE_SLOTS._initial_value == slots
    read_upload(wide(3000, 2000))
    assert free
    assert set(free) == {slots - 1}
    assert DECODE_SLOTS._value == slots


def test_a_failed_decode_gives_its_slot_back(settings):
    from search.queries.uploads import DECODE_SLOTS

    with pytest.raises(UploadError, match="truncated"):
        read_upload(wide(3000, 2000)[:-100])  # its header whole, its pixels cut short
    assert DECODE_SLOTS._value == settings.TINYRAG_UPLOAD_DECODE_SLOTS


def test_settings_bound_sides_aspect_and_resize(settings):
    settings.TINYRAG_UPLOAD_MAX_SIDE = 500
    settings.TINYRAG_UPLOAD_MAX_ASPECT = 2
    settings.TINYRAG_UPLOAD_RESIZE_SIDE = 100
    with pytest.raises(UploadError, match="a side may be at most 500 pixels"):
        read_upload(wide(501, 400))
    with pytest.raises(UploadError, match="at most 2 times its shorter side"):
        read_upload(wide(301, 150))
    assert read_upload(wide(300, 150))[0].size == (100, 50)


# --- formats: each stored as a known type or refused ----------------------------------------

STORED_AS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".png",
    "GIF": ".png",
    "BMP": ".png",
}
# Every other format this Pillow writes (1-bit ones from a 1-bit image): all refused.
REFUSED = ["AVIF", "DDS", "DIB", "EPS", "ICNS", "ICO", "JPEG2000", "MSP", "PALM", "PCX",
           "PDF", "PPM", "QOI", "SGI", "SPIDER", "TGA", "TIFF", "XBM"]  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(STORED_AS))
def test_every_accepted_format_is_stored_as_jpeg_or_png(fmt):
    data = mpo() if fmt == "MPO" else encoded(gradient((64, 48)), fmt)
    upload = normalise_upload(data)
    assert upload.suffix == STORED_AS[fmt]
    with PILImage.open(io.BytesIO(upload.data)) as stored:
        assert stored.format == {".jpg": "JPEG", ".png": "PNG"}[upload.suffix]
        assert stored.size == upload.image.size == (64, 48)


@pytest.mark.parametrize("fmt", REFUSED)
def test_every_other_format_pillow_writes_is_refused(fmt):
    image = gradient((32, 32), "1" if fmt in {"MSP", "PALM", "XBM"} else "RGB")
    with pytest.raises(
        UploadError, match=r"^The file is not a JPEG, PNG, WebP, GIF or BMP image\.$"
    ):
        normalise_upload(encoded(image, fmt))


def test_a_multi_picture_jpeg_is_searched_and_stored_as_a_jpeg(index_built, user, clip_settings):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    payload = {"image": SimpleUploadedFile("3d.jpg", mpo()), "top_k": 3}
    response = client.post("/api/v1/search/image", payload, format="multipart")
    assert response.status_code == 201, response.content
    stored = SearchQuery.objects.get().uploaded_image
    assert stored.name.endswith(".jpg")
    with stored.open("rb") as f, PILImage.open(f) as img:
        assert (img.format, img.size, getattr(img, "n_frames", 1)) == ("JPEG", (64, 48), 1)


# --- metadata --------------------------------------------------------------------------------


def test_a_stored_photo_keeps_no_exif_gps_xmp_icc_or_comment_and_is_upright():
    upload = normalise_upload(sent_photo())
    assert upload.suffix == ".jpg"
    assert_no_metadata(upload.data)
    with PILImage.open(io.BytesIO(upload.data)) as stored:
        assert stored.size == (48, 64)  # the orientation tag applied, then dropped


def test_a_stored_png_keeps_no_text_icc_or_exif():
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Author", SPY.decode())
    text.add_itxt("XML:com.adobe.xmp", SPY.decode())
    exif = PILImage.Exif()
    exif[ExifTags.Base.Make] = SPY.decode()
    data = encoded(
        gradient((40, 30)),
        "PNG",
        pnginfo=text,
        exif=exif,
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    assert data.count(SPY) >= 3
    upload = normalise_upload(data)
    assert upload.suffix == ".png"
    assert_no_metadata(upload.data)


def test_an_uploaded_photo_is_stored_without_its_metadata(auth_client, user, search_index):
    payload = {
        "text": "",
        "top_k": 3,
        "class_filter": "",
        "image": SimpleUploadedFile("p.jpg", sent_photo()),
    }
    response = auth_client.post(reverse("search:run"), payload)
    assert response.status_code == 302
    query = SearchQuery.objects.get(user=user)
    with query.uploaded_image.open("rb") as f:
        stored = f.read()
    assert query.uploaded_image.name.endswith(".jpg")
    assert_no_metadata(stored)
    served = auth_client.get(reverse("search:query-upload", args=[query.pk]))
    assert b"".join(served.streaming_content) == stored


def test_a_polyglot_keeps_only_its_pixels(auth_client, user, search_index):
    html = b"<html><script>alert(1)</script></html>"
    jpeg = encoded(gradient((64, 48)), "JPEG")
    payload = {
        "text": "",
        "top_k": 3,
        "class_filter": "",
        "image": SimpleUploadedFile("x.jpg", jpeg + html),
    }
    assert auth_client.post(reverse("search:run"), payload).status_code == 302
    with SearchQuery.objects.get(user=user).uploaded_image.open("rb") as f:
        assert b"<script" not in f.read()


# --- sizes: checked before reading, bodies capped --------------------------------------------


@pytest.fixture
def no_search(monkeypatch):
    """The calls that reached the search service (which reads the upload): none expected."""
    calls = []
    monkeypatch.setattr(search_service, "image_search", lambda **kw: calls.append(kw))
    return calls


def test_a_page_upload_over_the_limit_is_refused_without_being_read(
    auth_client, settings, tmp_path, no_search
):
    settings.TINYRAG_INDEX_DIR = tmp_path
    settings.TINYRAG_UPLOAD_MAX_BYTES = 1 * MB
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"\0" * (3 * MB // 2 - 4))
    response = auth_client.post(reverse("search:run"), {"text": "", "top_k": 5, "image": big})
    assert response.status_code == 400
    assert "The file is 1.5 MB; the limit is 1 MB." in response.content.decode()
    assert no_search == []


def test_a_body_over_the_limit_is_refused_on_the_page_and_in_the_api(
    auth_client, user, settings, tmp_path, no_search
):
    settings.TINYRAG_INDEX_DIR = tmp_path
    settings.TINYRAG_UPLOAD_MAX_BYTES = 1 * MB  # + 1 MB of fields: bodies up to 2 MB
    body = {"top_k": "5", "image": SimpleUploadedFile("big.png", b"\0" * 3 * MB)}
    assert auth_client.post(reverse("search:run"), body).status_code == 400
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    body["image"].seek(0)
    response = api.post("/api/v1/search/image", body, format="multipart")
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid", "message": "The request body is too large."}
    }
    assert no_search == []


class CountingStream(io.BytesIO):
    """A request body that counts what was read of it."""

    consumed = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def multipart_request(size: int) -> tuple[WSGIRequest, CountingStream]:
    made = RequestFactory().post("/search/", {"image": SimpleUploadedFile("big.png", b"\0" * size)})
    body = made.read()
    stream = CountingStream(body)
    return WSGIRequest(
        {**made.environ, "wsgi.input": stream, "CONTENT_LENGTH": str(len(body))}
    ), stream


def test_a_body_whose_length_is_over_the_limit_is_not_read_at_all(settings):
    settings.TINYRAG_UPLOAD_MAX_BYTES = 1 * MB
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1 * MB
    request, stream = multipart_request(3 * MB)
    with pytest.raises(RequestDataTooBig, match="larger than 2 MB"):
        request.POST  # noqa: B018 -- parsing the body is what is tested
    assert stream.consumed == 0


def test_a_body_within_the_limit_is_parsed(settings):
    settings.TINYRAG_UPLOAD_MAX_BYTES = 1 * MB
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1 * MB
    request, stream = multipart_request(MB)
    assert request.FILES["image"].size == MB
    assert stream.consumed > MB


@pytest.mark.parametrize("claimed", ["", "0", "1000"])
def test_a_body_is_read_no_further_than_its_content_length(settings, claimed):
    settings.TINYRAG_UPLOAD_MAX_BYTES = 1 * MB
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1 * MB
    request, stream = multipart_request(3 * MB)  # over the limit, and a length that hides it
    request.environ["CONTENT_LENGTH"] = claimed
    request = WSGIRequest(request.environ)
    with contextlib.suppress(MultiPartParserError):  # a body cut short at its claimed length
        request.POST  # noqa: B018 -- parsing the body is what is tested
    assert "image" not in request.FILES
    assert stream.consumed <= int(claimed or 0)  # so the handler has nothing left to count


def test_the_handler_refuses_by_content_length_and_passes_file_data_on(settings):
    settings.TINYRAG_UPLOAD_MAX_BYTES = 100_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 0
    handler = RequestBodyLimitHandler()
    assert handler.handle_raw_input(None, {}, 100_000, b"b") is None  # at the limit: parsed
    with pytest.raises(RequestDataTooBig):
        handler.handle_raw_input(None, {}, 100_001, b"b")
    chunk = b"\0" * 65_536
    assert [handler.receive_data_chunk(chunk, start) for start in (0, 65_536)] == [chunk, chunk]


def test_gunicorn_caps_the_request_line_and_headers():
    from gunicorn.config import Config

    config = runpy.run_path(str(Path(__file__).parents[2] / "deploy" / "gunicorn.conf.py"))
    known = Config().settings
    limits = {
        name: config[name]
        for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size")
    }
    assert limits == {
        "limit_request_line": 4094,
        "limit_request_fields": 50,
        "limit_request_field_size": 8190,
    }
    assert set(limits) <= set(known)  # names gunicorn reads, not typos it would ignore


# --- deletion --------------------------------------------------------------------------------


def stored_query(user) -> tuple[SearchQuery, Path]:
    query = SearchQuery(
        user=user, kind="image", top_k=5, encoder="e", index_name="i", duration_ms=1
    )
    query.uploaded_image.save("q.png", ContentFile(encoded(gradient((8, 8)), "PNG")))
    return query, Path(query.uploaded_image.path)


def test_deleting_a_user_deletes_their_upload_files(
    user, other_user, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    (_, mine), (_, also_mine), (_, theirs) = (stored_query(u) for u in (user, user, other_user))
    assert mine.is_file()
    assert also_mine.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert not mine.exists()
    assert not also_mine.exists()
    assert theirs.is_file()


def delete_then_fail(query: SearchQuery) -> None:
    with transaction.atomic():
        search_service.delete_query(query=query)
        raise RuntimeError("the request failed after the delete")


def test_a_rolled_back_delete_keeps_the_file(
    user, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    query, path = stored_query(user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        delete_then_fail(query)
    assert callbacks == []
    assert SearchQuery.objects.filter(user=user).exists()
    assert path.is_file()


def test_a_refused_upload_is_explained_in_the_page_language_with_its_numbers(
    auth_client, settings, tmp_path, no_search
):
    """The same refusal on an Indonesian page: the catalogue's sentence, numbers written the
    Indonesian way (decimal comma)."""
    settings.TINYRAG_INDEX_DIR = tmp_path
    settings.TINYRAG_UPLOAD_MAX_BYTES = 1 * MB
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"\0" * (3 * MB // 2 - 4))
    response = auth_client.post(
        reverse("search:run"),
        {"text": "", "top_k": 5, "image": big},
        HTTP_ACCEPT_LANGUAGE="id",
    )
    assert response.status_code == 400
    assert "Ukuran berkas 1,5 MB; batasnya 1 MB." in response.content.decode()
    assert no_search == []
