"""What every product page shares: the errors shown as messages, file-view authentication."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from search.descriptions import services as describe_service
from search.index.service import SearchIndexError
from search.ml.errors import ModelError
from search.queries.services import SearchInputError
from search.queries.uploads import UploadError

# What a person can act on: shown as a message, never a 500.
USER_FACING_ERRORS = (
    SearchInputError,
    UploadError,
    describe_service.DescriptionsDisabled,
    describe_service.DescriptionQueueFull,
    SearchIndexError,
    ModelError,
)


def login_or_token_required(view):
    """For the file views that API responses link to: a session, or `Authorization: Token`."""

    @login_not_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            try:
                found = TokenAuthentication().authenticate(request)
            except AuthenticationFailed:
                found = None
            if found is None:
                return redirect_to_login(request.get_full_path())
            request.user = found[0]
        return view(request, *args, **kwargs)

    return wrapper
