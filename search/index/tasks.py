"""Background work of the index app, through Django's Tasks API (the backend is the TASKS
setting, as for search/descriptions/tasks.py)."""

from __future__ import annotations

from django_tasks import task

from search.index.distributed import embed_shard
from search.index.sync import execute_sync


@task()
def sync_collection_task(sync_id: int) -> str:
    """Sync a queued collection sync (rescan, then incremental build) and record it."""
    sync = execute_sync(sync_id)
    return sync.status if sync is not None else "gone"


@task()
def embed_shard_task(shard_id: int) -> str:
    """Embed one shard of a distributed build_index (search/index/distributed.py)."""
    return embed_shard(shard_id)
