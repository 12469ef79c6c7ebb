"""Catalog use cases that are not a dataset's import: what a collection image is shown as.

The dataset pipeline (download, prepare, check, import) lives in `search/catalog/datasets/`.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image as PILImage

THUMBNAIL_SIDE = 160  # px: a crisp grid cell on high-density screens
THUMBNAIL_QUALITY = 85  # JPEG quality: small files without visible loss at this size


def thumbnail_jpeg(*, path: Path) -> bytes:
    """A JPEG of the image at `path` that fits THUMBNAIL_SIDE (large images shrink, small ones
    keep their size); OSError when the file cannot be read as an image."""
    with PILImage.open(path) as img:
        thumb = img.convert("RGB")
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # shrinks, never enlarges
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()
