"""Reads of the published index: is one there, what does its manifest say."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from search.index.service import (
    IndexManifest,
    IndexType,
    SearchIndexError,
    get_index_service,
    read_manifest,
)


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


def index_choice(manifest: IndexManifest) -> str:
    """The index type and the measured recall behind it, in plain words for command output
    (`manage.py doctor`, build_index): "hnsw, recall@10 0.998 against exact search (1,000
    held-out vectors)", "flat (HNSW's recall@10 was 0.962 ...)", or just the type."""
    if manifest.recall_at_10 is None:
        return manifest.index_type
    measured = (
        f"recall@10 {manifest.recall_at_10:.3f} against exact search "
        f"({manifest.recall_queries:,} held-out vectors)"
    )
    if manifest.index_type == IndexType.HNSW:
        return f"{manifest.index_type}, {measured}"
    return f"{manifest.index_type} (HNSW's {measured} was too low)"


def is_published(*, name: str | None = None) -> bool:
    """Whether TINYRAG_INDEX_DIR holds a readable manifest of index `name` (default
    TINYRAG_INDEX_NAME); reads that one file, never the index itself."""
    try:
        read_manifest(settings.TINYRAG_INDEX_DIR, name or settings.TINYRAG_INDEX_NAME)
    except SearchIndexError:
        return False
    return True
