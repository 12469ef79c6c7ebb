"""Account pages beyond Django's own: sign-up, and a login form that throttles guessing.

Log in, log out (POST only) and password change are Django's own views (see urls.py).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("search:home")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("search:home")
    return render(request, "registration/signup.html", {"form": form})


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, refusing a username (or a client address) after repeated failures.

    Counts live in the cache for LOGIN_FAILURE_WINDOW seconds; a successful login clears the
    username's count. With several app servers, use a shared cache (Redis, Memcached).
    """

    def clean(self):
        keys = _throttle_keys(self.request, self.data.get("username", ""))
        limit = settings.TINYRAG_LOGIN_FAILURE_LIMIT
        if any((cache.get(k) or 0) >= limit for k in keys):
            raise ValidationError(
                "Too many failed logins. Try again in %(minutes)d minutes.",
                code="throttled",
                params={"minutes": settings.TINYRAG_LOGIN_FAILURE_WINDOW // 60},
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            for k in keys:
                cache.add(k, 0, settings.TINYRAG_LOGIN_FAILURE_WINDOW)
                cache.incr(k)
            raise
        cache.delete(keys[0])
        return cleaned


def _throttle_keys(request: HttpRequest | None, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    return [f"login-fail:user:{username.strip().lower()}", f"login-fail:addr:{address}"]
