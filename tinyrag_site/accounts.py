"""Account pages beyond Django's own: sign-up, and logins that throttle guessing.

Log in, log out (POST only) and password change are Django's own views (see urls.py).
"""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from tinyrag_site.throttling import client_address, count, forget, uncount


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("search:home")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="tinyrag_site.accounts.ThrottledModelBackend")
        return redirect("search:home")
    return render(request, "registration/signup.html", {"form": form})


class LoginThrottle:
    """Failed logins, counted per (username, client address) pair and per address.

    - After TINYRAG_LOGIN_FAILURE_LIMIT failures of one pair within the window, that pair
      alone is refused until the window ends: the same account from another address, and
      other accounts from the same address (a NAT, the proxy), still log in.
    - After TINYRAG_LOGIN_ADDRESS_FAILURE_LIMIT failures from one address, whatever the
      usernames, the address is refused: a much higher ceiling for spraying many accounts.
    - An attempt is counted *before* its password is checked, and taken back when the
      password was right: parallel guesses each take a place first, so no more than the
      limit are ever checked, in any number of workers (atomic counters, tinyrag_site/
      throttling.py).

    Why not django-axes: it reads the failure count before authenticating and records the
    failure after the password hash, which is the race that let 20 parallel attempts have
    6 passwords checked; and it applies one limit to every lockout parameter, where the pair
    and the address need different ones.
    """

    def __init__(self, request: HttpRequest, username: str):
        address = client_address(request)
        self.window = settings.TINYRAG_LOGIN_FAILURE_WINDOW
        self.pair = f"login:pair:{username.strip().casefold()}:{address}"
        self.address = f"login:address:{address}"
        self.retry_after: int | None = None

    def begin(self) -> bool:
        """Take a place for this attempt; False (and retry_after set) if refused."""
        pair = count(self.pair, self.window)
        if pair.count > settings.TINYRAG_LOGIN_FAILURE_LIMIT:
            self.retry_after = pair.retry_after
            return False
        address = count(self.address, self.window)
        if address.count > settings.TINYRAG_LOGIN_ADDRESS_FAILURE_LIMIT:
            self.retry_after = address.retry_after
            return False
        return True

    def succeeded(self) -> None:
        """The password was right: the pair starts afresh and the address keeps its place."""
        forget(self.pair, self.window)
        uncount(self.address, self.window)


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend behind LoginThrottle, for every login form (the site's and the
    admin's) and anything else that calls `authenticate()` with a request."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None or username is None:
            return super().authenticate(request, username, password, **kwargs)
        throttle = LoginThrottle(request, username)
        if not throttle.begin():
            request.login_retry_after = throttle.retry_after
            # stops authenticate() here: no password is checked, user_login_failed is sent
            raise PermissionDenied("too many failed logins")
        user = super().authenticate(request, username, password, **kwargs)
        if user is not None:
            throttle.succeeded()
        return user


class ThrottledLoginMixin:
    """A login form that says so when the throttle, not the password, refused it."""

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            wait = getattr(self.request, "login_retry_after", None)
            if wait is None:
                raise
            raise ValidationError(
                "Too many failed logins for this account from your address. "
                "Try again in %(minutes)d minutes.",
                code="throttled",
                params={"minutes": max(1, math.ceil(wait / 60))},
            ) from None


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class LoginView(auth_views.LoginView):
    """Django's login page; a throttled attempt is answered 429 with Retry-After."""

    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        wait = getattr(self.request, "login_retry_after", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
