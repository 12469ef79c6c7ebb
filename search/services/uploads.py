"""Uploaded query images: validated by content (Pillow), never by name or claimed type."""

from __future__ import annotations

import io
import warnings

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


class UploadError(ValueError):
    """The upload is not an image we accept; the message is for the person who sent it."""


def read_upload(data: bytes) -> tuple[PILImage.Image, str]:
    """Decode an upload into an RGB image (EXIF orientation applied); returns it and its format.

    Refuses empty or oversized files, formats other than JPEG/PNG/WebP/GIF/BMP, images of more
    than TINYRAG_UPLOAD_MAX_PIXELS (checked from the header, before decoding), and truncated
    or corrupt files.
    """
    limit = settings.TINYRAG_UPLOAD_MAX_BYTES
    if not data:
        raise UploadError("The file is empty.")
    if len(data) > limit:
        raise UploadError(
            f"The file is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if img.width * img.height > settings.TINYRAG_UPLOAD_MAX_PIXELS:
                raise UploadError(
                    f"The image is {img.width}x{img.height} pixels; the limit is "
                    f"{settings.TINYRAG_UPLOAD_MAX_PIXELS:,} pixels."
                )
            fmt = img.format
            img.seek(0)  # an animated GIF/WebP: its first frame
            img.load()
            img = ImageOps.exif_transpose(img)
    except UploadError:
        raise
    except (
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ):
        raise UploadError(
            "The image decodes to far too many pixels; the limit is "
            f"{settings.TINYRAG_UPLOAD_MAX_PIXELS:,} pixels."
        ) from None
    except UnidentifiedImageError:
        raise UploadError("The file is not a JPEG, PNG, WebP, GIF or BMP image.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(f"The image cannot be decoded ({exc}); it may be truncated.") from None
    from search.ml.clip import to_rgb  # lazily: importing torch is for the first search

    return to_rgb(img), fmt
