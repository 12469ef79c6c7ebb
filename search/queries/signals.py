"""A query's uploaded file goes with its row."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from search.queries.models import SearchQuery


@receiver(post_delete, sender=SearchQuery, dispatch_uid="tinyrag-delete-query-upload")
def delete_upload_file(sender, instance: SearchQuery, using: str = "default", **kwargs) -> None:
    """A deleted query's upload file goes with it, however the row went (delete_query, the
    history's "delete all", a deleted user's cascade, the admin); only once the delete commits,
    so a rolled-back delete keeps its file. A storage error is logged, not raised."""
    if not instance.uploaded_image:
        return
    storage, name = instance.uploaded_image.storage, instance.uploaded_image.name
    transaction.on_commit(lambda: storage.delete(name), using=using, robust=True)
