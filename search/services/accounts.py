"""Account use cases of the search app: the user's API token."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token


def rotate_api_token(*, user) -> Token:
    """A new API token for `user`; the old key stops working at once."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)
