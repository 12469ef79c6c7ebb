"""Image files -> batches of preprocessed pixels, decoded in DataLoader worker processes.

The one input pipeline of bulk embedding: `build_index` uses it, and so does
`benchmarks/embed_throughput.py`. No Django here, so benchmarks run it standalone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset


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
    """Decodes and preprocesses one image per item, inside a DataLoader worker."""

    def __init__(self, items: Sequence[ImageFile], preprocess: Callable):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            with PILImage.open(item.path) as img:
                return item.id, self.preprocess(img), ""  # the preprocessor converts to RGB
        except Exception as exc:  # noqa: BLE001 -- an undecodable file is skipped, never fatal
            return item.id, None, f"{item.path}: {exc or type(exc).__name__}"


def collate(batch) -> PixelBatch:
    good = [(i, x) for i, x, _ in batch if x is not None]
    return PixelBatch(
        ids=np.array([i for i, _ in good], dtype=np.int64),
        pixels=torch.stack([x for _, x in good]) if good else None,
        errors=[e for _, x, e in batch if x is None],
    )


def pixel_batches(
    items: Sequence[ImageFile],
    preprocess: Callable,
    *,
    batches: Iterable[list[int]] | None = None,
    batch_size: int = 64,
    workers: int = 2,
) -> Iterator[PixelBatch]:
    """Batches of `items` (or of the given index batches), decoded by `workers` processes."""
    kwargs = {"batch_sampler": list(batches)} if batches is not None else {"batch_size": batch_size}
    return iter(
        DataLoader(
            ImageFiles(items, preprocess),
            num_workers=workers,
            collate_fn=collate,
            # enough decoded batches queued to cover a model step on the slowest worker
            prefetch_factor=4 if workers else None,
            **kwargs,
        )
    )


def image_files(paths: Sequence[Path | str]) -> list[ImageFile]:
    return [ImageFile(i, str(p)) for i, p in enumerate(paths)]
