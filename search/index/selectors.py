"""Reads of the published index: is one there, what does its manifest say."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from search.index.service import IndexManifest, SearchIndexError, get_index_service, read_manifest


@dataclass(frozen=True)
class IndexStatus:
    manifest: IndexManifest | None
    problem: str = ""  # what is wrong and the command that fixes it


def index_status(name: str | None = None, *, load: bool = False) -> IndexStatus:
    """The published index the searches use, or why there is none. `load`: load it too, as
    the search pages do (an index file that cannot be read is said before anyone searches);
    otherwise its manifest only, and no faiss is imported (the collections page)."""
    service = get_index_service(name)
    try:
        return IndexStatus(service.manifest if load else service.published_manifest())
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
