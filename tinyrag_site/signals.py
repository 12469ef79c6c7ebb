"""The site's receivers: the shared cache's table, API tokens that follow passwords."""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.db.models.signals import post_migrate, pre_save
from django.dispatch import receiver

from tinyrag_site.accounts import rotate_api_token


@receiver(post_migrate, dispatch_uid="tinyrag-create-cache-table")
def create_cache_table(sender, using: str = "default", verbosity: int = 1, **kwargs) -> None:
    """`migrate` also creates the database cache's table (TINYRAG_CACHE_URL=db://...), so
    every way of setting up a database (dev.sh, the release step, compose, tests) has it.
    Idempotent; a Redis cache needs no table and is left alone."""
    if sender.label == "auth":  # sent once per app that has models: act once, on one always there
        call_command("createcachetable", database=using, verbosity=max(0, verbosity - 1))


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="tinyrag-rotate-api-token")
def rotate_api_token_on_password_change(
    sender, instance, raw: bool = False, update_fields=None, **kwargs
) -> None:
    """A new password, by any path (the password change page, the admin, `manage.py
    changepassword`), ends the old API token too: whoever had the old password may have it.
    (Other sessions end by themselves: their session hash no longer matches.)"""
    if raw or instance.pk is None:  # fixtures; a new user has no token yet
        return
    if update_fields is not None and "password" not in update_fields:  # e.g. last_login
        return
    # check_password() upgrading the hash of the same password saves only it, with no raw
    # password set: Django does not count that as a change, nor do we.
    upgrade = update_fields is not None and set(update_fields) == {"password"}
    if upgrade and getattr(instance, "_password", None) is None:
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True)
    old_hash = stored.first()
    if old_hash is not None and old_hash != instance.password:
        rotate_api_token(user=instance)
