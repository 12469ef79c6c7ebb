"""Catalog use cases that are not a dataset's import: what a collection image is shown as.

The dataset pipeline (download, prepare, check, import) lives in `search/catalog/datasets/`.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image as PILImage

# The sides a thumbnail can be asked for (px, its longer side): a result card (160), the same
# card on a high-density screen or the image page (320), the image page on one (640). A fixed
# set keeps the work per request bounded and the browser's cache small.
THUMBNAIL_SIZES = (160, 320, 640)
THUMBNAIL_SIDE = THUMBNAIL_SIZES[0]  # the default: what a plain thumbnail URL returns
THUMBNAIL_QUALITY = 88  # JPEG quality: an upscaled 64 px image shows no blocks at this level
# Lanczos: a 64x64 TinyImageNet image shown at 200 px looks smooth, not like a mosaic of blocks
# (nearest-neighbour, or the browser's `image-rendering: pixelated`).
RESAMPLE = PILImage.Resampling.LANCZOS


def thumbnail_jpeg(*, path: Path, size: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG of the image at `path` resampled (Lanczos) so its longer side is `size`, one of
    THUMBNAIL_SIZES: large images shrink, small ones are upscaled smoothly; the aspect ratio
    is kept. ValueError for another size, OSError when the file cannot be read as an image."""
    if size not in THUMBNAIL_SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}")
    with PILImage.open(path) as img:
        img.draft("RGB", (size, size))  # a large JPEG is decoded at a reduced scale: less work
        source = img.convert("RGB")
    scale = size / max(source.size)
    target = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
    thumb = source.resize(target, RESAMPLE) if target != source.size else source
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()
