"""What every product page shares: how a domain error is shown, file-view authentication."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from search.errors import ApplicationError


def error_text(request: HttpRequest, exc: ApplicationError) -> str:
    """What a page says of a domain error: its message, except that someone who is not staff
    reads the plain `for_users` words where only the operator can act (a model or index
    missing, a backend turned off)."""
    if exc.for_users and not request.user.is_staff:
        return str(exc.for_users)  # gettext_lazy: in the request's language
    return str(exc)


def show_error(request: HttpRequest, exc: ApplicationError, *, back: str) -> HttpResponse:
    """How a page shows a domain error (search.errors) that it has no better place for (a
    form field, the description card): a message on the page the user came from. Only a
    view whose URL names what is missing answers Http404 instead (`similar`)."""
    messages.error(request, error_text(request, exc))
    return redirect(back)


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
