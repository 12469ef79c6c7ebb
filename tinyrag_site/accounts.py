"""Accounts: sign-up, logins that throttle guessing, the profile page with the API token.

Log in and password change are Django's views with the throttle; log out (POST only) is
Django's own (see urls.py). A password change also replaces the API token
(tinyrag_site/signals.py).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from tinyrag_site import timezones
from tinyrag_site.language import saved_language
from tinyrag_site.throttling import (
    Rate,
    client_network,
    count,
    forget,
    in_words,
    over_rate,
    refusal,
    too_many_requests,
    uncount,
)


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("search:home")
    if request.method == "POST":  # every account brings its own rates and queue places
        wait = over_rate("signup", request)
        if wait is not None:
            return too_many_requests(request, refusal("signup", wait), wait)
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="tinyrag_site.accounts.ThrottledModelBackend")
        return redirect("search:home")
    return render(request, "registration/signup.html", {"form": form})


class LoginThrottle:
    """Logins, counted per client address, and failed logins per (username, client address)
    pair and per address (an IPv6 address by its /64: tinyrag_site/throttling.py).

    - TINYRAG_LOGIN_RATE attempts per address, right or wrong: each costs a password hash.
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

    LOCKED = gettext_lazy("Too many failed logins for this account from your address.")
    BUSY = gettext_lazy("Too many logins from your address.")

    def __init__(self, request: HttpRequest, username: str):
        network = client_network(request)
        self.window = settings.TINYRAG_LOGIN_FAILURE_WINDOW
        self.attempts = f"login:attempts:{network}"
        self.pair = f"login:pair:{username.strip().casefold()}:{network}"
        self.address = f"login:address:{network}"
        self.refusal = ""
        self.retry_after: int | None = None

    def begin(self) -> bool:
        """Take a place for this attempt; False (refusal and retry_after set) if refused.
        The address is counted before the pair, so an address past its ceiling makes no
        new entries in the cache, whatever usernames it makes up."""
        rate = Rate.parse(settings.TINYRAG_LOGIN_RATE)
        attempts = count(self.attempts, rate.seconds)
        if attempts.count > rate.limit:
            return self._refuse(self.BUSY, attempts.retry_after)
        address = count(self.address, self.window)
        if address.count > settings.TINYRAG_LOGIN_ADDRESS_FAILURE_LIMIT:
            return self._refuse(self.LOCKED, address.retry_after)
        pair = count(self.pair, self.window)
        if pair.count > settings.TINYRAG_LOGIN_FAILURE_LIMIT:
            uncount(self.address, self.window)  # a locked pair's retries are not new failures
            return self._refuse(self.LOCKED, pair.retry_after)
        return True

    def _refuse(self, refusal: str, retry_after: int) -> bool:
        self.refusal, self.retry_after = refusal, retry_after
        return False

    @property
    def message(self) -> str:
        return _("%(refusal)s Try again in %(wait)s.") % {
            "refusal": self.refusal,
            "wait": in_words(self.retry_after),
        }

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
            request.login_throttle = throttle
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
            throttle = getattr(self.request, "login_throttle", None)
            if throttle is None:
                raise
            raise ValidationError(throttle.message, code="throttled") from None


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
        throttle = getattr(self.request, "login_throttle", None)
        if throttle is not None:
            response.status_code = 429
            response["Retry-After"] = str(throttle.retry_after)
        return response


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Django's password change form, whose old-password check is a login attempt like any
    other: someone holding a stolen session must not guess the password through it."""

    def __init__(self, user, *args, request: HttpRequest, **kwargs):
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self):
        throttle = LoginThrottle(self.request, self.user.get_username())
        if not throttle.begin():
            raise ValidationError(throttle.message, code="throttled")
        old_password = super().clean_old_password()  # a wrong one stays counted
        throttle.succeeded()
        return old_password


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}


def api_token(*, user) -> Token:
    """The user's API token, made on first use."""
    return Token.objects.get_or_create(user=user)[0]


def rotate_api_token(*, user) -> Token:
    """A new API token for `user`; the old key stops working at once."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


@never_cache  # the page shows the API token: never kept by a browser or a proxy
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """The account page: password, language, time zone, API token. `?confirm=regenerate` is
    the token's confirm step (changes nothing); a POST with `time_zone` keeps the viewer's
    zone, any other POST (the confirm step's button) replaces the token. The language form
    posts to set_language (tinyrag_site/language.py)."""
    if request.method == "POST":
        if "time_zone" in request.POST:
            return _save_time_zone(request)
        rotate_api_token(user=request.user)
        messages.success(
            request,
            _(
                "A new API token was created. The old one no longer works: give the new one "
                "to every script or app that used the old one."
            ),
        )
        return redirect("profile")
    if request.GET.get("confirm") == "regenerate":
        context = {
            "confirm": "token",
            "token": Token.objects.filter(user=request.user).first(),
            "back": reverse("profile"),
            "title": _("Regenerate your API token?"),
        }
        template = "search/confirm.html#panel" if request.htmx else "search/confirm.html"
        return render(request, template, context)
    return render(
        request,
        "search/profile.html",
        {
            "token": api_token(user=request.user),
            "zone_choices": timezones.zone_choices(),
            "chosen_zone": request.COOKIES.get(timezones.CHOICE_COOKIE, ""),
            "zone_label": timezones.zone_label(),
            "saved_language": saved_language(request.user),
        },
    )


def _save_time_zone(request: HttpRequest) -> HttpResponse:
    name = request.POST["time_zone"].strip()
    response = redirect(reverse("profile") + "#time-zone")
    if not name:
        timezones.remember_choice(response, None)
        messages.success(request, _("Times now follow your browser's time zone."))
    elif name in timezones.zone_choices():
        timezones.remember_choice(response, name)
        messages.success(request, _("Times are now shown in %(zone)s.") % {"zone": name})
    else:
        messages.error(request, _("Choose a time zone from the list."))
    return response
