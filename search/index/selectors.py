"""Reads of the published index: is one there, what does its manifest say."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from search.index.service import IndexManifest, SearchIndexError, get_index_service, read_manifest


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


def is_published(*, name: str | None = None) -> bool:
    """Whether TINYRAG_INDEX_DIR holds a readable manifest of index `name` (default
    TINYRAG_INDEX_NAME); reads that one file, never the index itself."""
    try:
        read_manifest(settings.TINYRAG_INDEX_DIR, name or settings.TINYRAG_INDEX_NAME)
    except SearchIndexError:
        return False
    return True
