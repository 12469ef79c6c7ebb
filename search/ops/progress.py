"""Progress bars for management commands: tqdm on stderr, silent at --verbosity 0."""

from __future__ import annotations

import functools

from tqdm import tqdm


def progress_factory(verbosity: int):
    """A tqdm constructor that honours the command's verbosity."""
    return functools.partial(tqdm, disable=verbosity < 1, dynamic_ncols=True)
