"""What the management commands share: progress bars (tqdm on stderr, silent at
--verbosity 0) and the default number of file-reading workers."""

from __future__ import annotations

import functools
import os

from tqdm import tqdm

# Threads or processes reading image files: enough to keep one CPU model fed, few enough
# for a laptop.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def progress_factory(verbosity: int):
    """A tqdm constructor that honours the command's verbosity."""
    return functools.partial(tqdm, disable=verbosity < 1, dynamic_ncols=True)
