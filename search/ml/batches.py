"""Image files -> batches of preprocessed pixels, decoded in DataLoader worker processes.

The one input pipeline of bulk embedding: `build_index` uses it, and so does
`benchmarks/embed_throughput.py`. Each file is decoded on its own (`decode`), then each batch
is resized and normalised in one call (`pixels`), in the worker when there are workers.
No Django here, so benchmarks run it standalone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from search.ml.device import usable_cpu_count

# torch.compile costs ~22-25 s once; it embedded 53.1 img/s against 45.7 eager on a quiet
# 2-core day (break-even ~8,000 images) and no faster than eager under load (29.4 vs 31.2):
# from here on it pays with a margin.
COMPILE_MIN_IMAGES = 20_000


def default_decode_workers(cpus: int | None = None) -> int:
    """Decode processes for bulk embedding: half the usable CPUs, at most 4, none on one CPU.

    A worker decodes and preprocesses ~900 img/s (64x64 JPEGs, one thread, measured), far
    more than a CPU model embeds, so one overlaps decoding with the model on the other core
    (2 CPUs, ViT-B/32 bf16: 30.0 img/s with 1 worker, 28.6 decoding in this process); the
    cap of 4 feeds a GPU. With one CPU a worker could only steal the model's time.
    """
    return max(0, min(4, (cpus or usable_cpu_count()) // 2))


class BatchPreprocessor(Protocol):
    """search.ml.clip.ImagePreprocessor's two steps, as this pipeline uses them."""

    def decode(self, image: PILImage.Image) -> torch.Tensor: ...

    def pixels(self, decoded: Sequence[torch.Tensor]) -> torch.Tensor: ...


@dataclass(frozen=True)
class ImageFile:
    id: int
    path: str  # absolute


@dataclass
class PixelBatch:
    ids: np.ndarray  # int64 ids of the images that decoded
    pixels: torch.Tensor | None  # (n, 3, H, W); None when none of the batch decoded
    errors: list[str]  # "path: reason" for the files that did not

    def __len__(self) -> int:
        return len(self.ids) + len(self.errors)


class ImageFiles(TorchDataset):
    """Decodes one image per item, inside a DataLoader worker."""

    def __init__(self, items: Sequence[ImageFile], preprocess: BatchPreprocessor):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            with PILImage.open(item.path) as img:
                return item.id, self.preprocess.decode(img), ""  # decode converts to RGB
        except Exception as exc:  # noqa: BLE001 -- an undecodable file is skipped, never fatal
            return item.id, None, f"{item.path}: {exc or type(exc).__name__}"


def collate(batch, *, preprocess: BatchPreprocessor) -> PixelBatch:
    good = [(i, x) for i, x, _ in batch if x is not None]
    return PixelBatch(
        ids=np.array([i for i, _ in good], dtype=np.int64),
        pixels=preprocess.pixels([x for _, x in good]) if good else None,
        errors=[e for _, x, e in batch if x is None],
    )


def pixel_batches(
    items: Sequence[ImageFile],
    preprocess: BatchPreprocessor,
    *,
    batches: Iterable[list[int]] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
) -> Iterator[PixelBatch]:
    """Batches of `items` (or of the given index batches), decoded by `workers` processes
    (default: `default_decode_workers()`; 0 decodes in this process)."""
    if workers is None:
        workers = default_decode_workers()
    kwargs = {"batch_sampler": list(batches)} if batches is not None else {"batch_size": batch_size}
    return iter(
        DataLoader(
            ImageFiles(items, preprocess),
            num_workers=workers,
            collate_fn=partial(collate, preprocess=preprocess),
            # enough decoded batches queued to cover a model step on the slowest worker
            prefetch_factor=4 if workers else None,
            **kwargs,
        )
    )


def image_files(paths: Sequence[Path | str]) -> list[ImageFile]:
    return [ImageFile(i, str(p)) for i, p in enumerate(paths)]
