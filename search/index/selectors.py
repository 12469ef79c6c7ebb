"""Reads of the published index: is one there, what does its manifest say."""

from __future__ import annotations

from dataclasses import dataclass

from search.index.service import IndexManifest, SearchIndexError, get_index_service


@dataclass(frozen=True)
class IndexStatus:
    manifest: IndexManifest | None
    problem: str = ""  # what is wrong and the command that fixes it


def index_status(name: str | None = None) -> IndexStatus:
    """The published index the searches use, or why there is none."""
    try:
        return IndexStatus(get_index_service(name).manifest)
    except SearchIndexError as exc:
        return IndexStatus(None, str(exc))
