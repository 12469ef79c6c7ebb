"""The bulk embedding pipeline: per-file decoding, per-batch preprocessing, worker policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from search.index.build import BuildOptions
from search.ml.batches import default_decode_workers, image_files, pixel_batches
from search.ml.clip import ClipEmbedder
from search.ml.device import Precision
from search.ml.images import to_rgb
from tests.fixtures.models import TINY_CLIP


def picture(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Smooth colour bands plus noise (like a photo, so JPEG and resizing do real work)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    bands = [np.sin(6 * x * rng.uniform(0.5, 2) + 4 * y + rng.uniform(0, 6)) for _ in range(3)]
    pixels = np.stack(bands, axis=-1) * 100 + 128 + rng.normal(0, 20, (height, width, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
        image.putalpha(alpha)
        return image
    return image.convert(mode)


# Square TinyImageNet-like, grayscale, transparent, portrait, landscape, tiny, palette.
MIXED = [
    picture(0, (64, 64)),
    picture(1, (64, 64), "L"),
    picture(2, (64, 64), "RGBA"),
    picture(3, (50, 90)),
    picture(4, (301, 200), "RGBA"),
    picture(5, (7, 5)),
    picture(6, (64, 64), "P"),
    picture(7, (64, 64)),
]


@pytest.fixture
def embedder(tiny_clip_dir) -> ClipEmbedder:
    return ClipEmbedder(str(tiny_clip_dir), precision=Precision.FP32)


def test_batched_pixels_equal_the_processor_run_on_each_image_alone(embedder):
    preprocess = embedder.image_preprocessor()
    processor = preprocess.image_processor

    batched = preprocess.pixels([preprocess.decode(image) for image in MIXED])
    # The route before batching: each picture alone, as RGB PIL, through the HF processor.
    alone = torch.cat(
        [processor(images=[to_rgb(image)], return_tensors="pt")["pixel_values"] for image in MIXED]
    )

    assert batched.dtype == torch.float32
    assert batched.shape == (len(MIXED), 3, TINY_CLIP.image_size, TINY_CLIP.image_size)
    assert torch.equal(batched, alone)  # same resize per same-sized group: identical pixels


def test_decode_gives_uint8_rgb_at_the_files_own_size(embedder, tmp_path):
    gray = picture(8, (40, 30), "L")
    path = tmp_path / "gray.png"
    gray.save(path)

    decoded = embedder.image_preprocessor().decode(path)

    assert decoded.dtype == torch.uint8
    assert decoded.shape == (3, 30, 40)
    expected = np.asarray(gray)
    for channel in decoded.numpy():  # a grayscale file becomes three equal channels
        np.testing.assert_array_equal(channel, expected)


@pytest.mark.parametrize("workers", [0, 2])
def test_pipeline_of_mixed_files_gives_embed_images_vectors_and_skips_a_broken_one(
    embedder, tmp_path, workers
):
    paths = []
    for index, image in enumerate(MIXED):
        path = tmp_path / f"{index}.png"  # lossless, so both routes see the same pixels
        image.save(path)
        paths.append(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths.insert(3, broken)

    preprocess = embedder.image_preprocessor()
    batches = list(pixel_batches(image_files(paths), preprocess, batch_size=4, workers=workers))

    ids = np.concatenate([batch.ids for batch in batches])
    vectors = np.concatenate([embedder.embed_pixel_batch(b.pixels) for b in batches])
    errors = [error for batch in batches for error in batch.errors]
    assert ids.tolist() == [0, 1, 2, 4, 5, 6, 7, 8]  # every file but the broken one, in order
    assert len(errors) == 1
    assert errors[0].startswith(f"{broken}: ")
    # sentence-transformers' own encode of the PIL images: an independent route to the vectors.
    np.testing.assert_allclose(vectors, embedder.embed_images(MIXED), atol=1e-5)


@pytest.mark.parametrize(
    ("cpus", "workers"),
    [(1, 0), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)],
)
def test_decode_workers_leave_the_model_half_the_cpus(cpus, workers):
    assert default_decode_workers(cpus) == workers


def test_build_index_decodes_with_the_default_workers_of_this_machine():
    assert BuildOptions(name="x").workers == default_decode_workers()
