"""Uploaded query images: validated by content (Pillow), never by name or claimed type.

An upload costs what it weighs: its size, pixel count, longest side and aspect ratio are checked
before anything is decoded (CLIP scales the shorter side to 224, so a 200000x1 PNG of 666 bytes
would grow to gigabytes), a JPEG is decoded at a reduced scale where it can be, and every image
is shrunk to at most TINYRAG_UPLOAD_RESIZE_SIDE right after decoding, before it is turned
upright or converted to RGB, so that no copy is made at full size. What is stored is re-encoded
from the pixels alone: no EXIF, GPS, XMP, ICC profile or comment of the sender's file is kept.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from search.errors import InvalidInput
from search.ml.images import to_rgb

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# Pillow opens a multi-picture JPEG (3D cameras, bursts) as MPO: a JPEG, read for its first picture.
PHOTO_FORMATS = frozenset({"JPEG", "MPO"})
# Photos are stored as JPEG, everything else (drawings, screenshots, transparency) as PNG.
ENCODINGS = {"JPEG": (".jpg", {"quality": 90}), "PNG": (".png", {})}
# A full-size decode takes up to TINYRAG_UPLOAD_MAX_PIXELS x 8 bytes (RGBA and its premultiplied
# copy for the shrink: 320 MB at 40 M pixels); gunicorn threads x that is the memory one worker
# may need at once, so only this many decode at a time in a process, and the others wait.
DECODE_SLOTS = threading.BoundedSemaphore(settings.TINYRAG_UPLOAD_DECODE_SLOTS)


class UploadError(InvalidInput, ValueError):
    """The upload is not an image we accept; the message is for the person who sent it."""


@dataclass(frozen=True)
class NormalisedUpload:
    """An upload as it is searched and stored: the shrunk RGB image and its re-encoded file."""

    image: PILImage.Image
    data: bytes
    suffix: str  # the encoder's own: ".jpg" or ".png"


def check_upload_size(size: int) -> None:
    """UploadError for a file over TINYRAG_UPLOAD_MAX_BYTES; callers check before reading it."""
    limit = settings.TINYRAG_UPLOAD_MAX_BYTES
    if size > limit:
        raise UploadError(
            _("The file is %(size)s MB; the limit is %(limit)s MB.")
            % {"size": number_format(size / 2**20, 1), "limit": number_format(limit / 2**20, 0)}
        )


def _grouped(number: int) -> str:
    """40,000,000 in English, 40.000.000 in Indonesian."""
    return number_format(number, force_grouping=True)


def _check_dimensions(width: int, height: int) -> None:
    """Refuse, from the header, an image whose decoding or CLIP resize would cost too much."""
    max_pixels = settings.TINYRAG_UPLOAD_MAX_PIXELS
    if width * height > max_pixels:
        raise UploadError(
            _("The image is %(width)sx%(height)s pixels; the limit is %(limit)s pixels.")
            % {"width": width, "height": height, "limit": _grouped(max_pixels)}
        )
    longest, shortest = max(width, height), min(width, height)
    max_side = settings.TINYRAG_UPLOAD_MAX_SIDE
    if longest > max_side:
        raise UploadError(
            _("The image is %(width)sx%(height)s pixels; a side may be at most %(limit)s pixels.")
            % {"width": width, "height": height, "limit": _grouped(max_side)}
        )
    max_aspect = settings.TINYRAG_UPLOAD_MAX_ASPECT
    if longest > max_aspect * shortest:
        raise UploadError(
            _(
                "The image is %(width)sx%(height)s pixels; its longer side may be at most "
                "%(ratio)s times its shorter side."
            )
            % {"width": width, "height": height, "ratio": max_aspect}
        )


def _draft_size(width: int, height: int) -> tuple[int, int]:
    """The smallest size, in the image's proportions, that still covers the resize target."""
    scale = min(1.0, settings.TINYRAG_UPLOAD_RESIZE_SIDE / max(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _resamplable(img: PILImage.Image) -> PILImage.Image:
    """`img` in a mode whose pixels can be averaged: Pillow shrinks palette and 1-bit images by
    picking pixels (nearest neighbour), and would blend a "PA" image's palette indices."""
    if img.mode in {"P", "PA"}:
        transparent = img.mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if transparent else "RGB")
    if img.mode == "1":
        return img.convert("L")
    return img


def read_upload(data: bytes) -> tuple[PILImage.Image, str]:
    """Decode an upload into an RGB image (EXIF orientation applied, shrunk to fit
    TINYRAG_UPLOAD_RESIZE_SIDE); returns it and its format (one of ALLOWED_FORMATS).

    Refuses empty or oversized files, formats other than JPEG/PNG/WebP/GIF/BMP, images of more
    than TINYRAG_UPLOAD_MAX_PIXELS, with a side over TINYRAG_UPLOAD_MAX_SIDE or an aspect ratio
    over TINYRAG_UPLOAD_MAX_ASPECT (all checked from the header, before decoding), and
    truncated or corrupt files.
    """
    if not data:
        raise UploadError(_("The file is empty."))
    check_upload_size(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            _check_dimensions(img.width, img.height)
            fmt = "JPEG" if img.format in PHOTO_FORMATS else img.format
            side = settings.TINYRAG_UPLOAD_RESIZE_SIDE
            with DECODE_SLOTS:
                img.seek(0)  # an animated GIF/WebP, a multi-picture JPEG: its first frame
                if fmt == "JPEG":
                    img.draft("RGB", _draft_size(img.width, img.height))  # at 1/2..1/8 scale
                img.load()
                img = _resamplable(img)
                # in place, reducing by whole factors first; shrinks, never enlarges
                img.thumbnail((side, side), PILImage.Resampling.LANCZOS)
            # after the shrink, on the small image: a square bound fits either way up
            img = ImageOps.exif_transpose(img)
    except UploadError:
        raise
    except (
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ):
        raise UploadError(
            _("The image decodes to far too many pixels; the limit is %(limit)s pixels.")
            % {"limit": _grouped(settings.TINYRAG_UPLOAD_MAX_PIXELS)}
        ) from None
    except UnidentifiedImageError:
        raise UploadError(_("The file is not a JPEG, PNG, WebP, GIF or BMP image.")) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(
            _("The image cannot be decoded (%(reason)s); it may be truncated.") % {"reason": exc}
        ) from None
    return to_rgb(img), fmt


def normalise_upload(data: bytes) -> NormalisedUpload:
    """The upload checked, decoded and shrunk (read_upload), and re-encoded for storage from its
    pixels alone: photos as JPEG, anything else as PNG."""
    image, fmt = read_upload(data)
    encoder = "JPEG" if fmt == "JPEG" else "PNG"
    suffix, options = ENCODINGS[encoder]
    # A fresh image of the same pixels: Pillow's encoders copy some of `info` (a JPEG comment,
    # a PNG's ICC profile) from the image they are given.
    pixels = PILImage.frombytes("RGB", image.size, image.tobytes())
    buffer = io.BytesIO()
    pixels.save(buffer, encoder, **options)
    return NormalisedUpload(image=image, data=buffer.getvalue(), suffix=suffix)
