"""Counters and rate limits that hold across every web worker and machine.

State lives in Django's shared cache (TINYRAG_CACHE_URL: the database by default, Redis for
many machines), never in a process's memory. Each counter is a fixed window: the key carries
the window's number, `add()` creates it and `incr()` counts, both atomic (Redis; the database
cache of tinyrag_site/cache.py, which does both for several counters in one transaction:
`count_up`), so parallel requests in different workers never share a count. A fixed window
lets a client spend up to twice its rate across a window boundary; that is the price of one
cache round trip per check.

- `count()`, `count_all()`: the primitive, used by the login throttle (tinyrag_site/accounts.py)
  too.
- `ApiRateThrottle`, `ApiSearchRateThrottle`, `ApiDescribeRateThrottle`: DRF throttles; an
  API search or description request counts the API rate and its own in one round trip.
- `rate_limited(scope)`: the same limits for the pages (429 page, or an HTMX message).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "second": 1, "m": 60, "minute": 60, "h": 3600, "hour": 3600}
PERIODS |= {"d": 86400, "day": 86400}

# scope -> the setting holding its rate
RATE_SETTINGS = {
    "api": "TINYRAG_API_RATE",
    "search": "TINYRAG_SEARCH_RATE",
    "describe": "TINYRAG_DESCRIBE_RATE",
    "signup": "TINYRAG_SIGNUP_RATE",
}


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """ "120/minute" -> Rate(120, 60); also s/m/h/d."""
        try:
            number, period = text.strip().split("/")
            rate = cls(int(number), PERIODS[period.strip().lower()])
        except (ValueError, KeyError):
            raise ImproperlyConfigured(
                f"{text!r} is not a rate: write N/second, N/minute, N/hour or N/day."
            ) from None
        if rate.limit < 1:
            raise ImproperlyConfigured(f"{text!r}: a rate allows at least 1 request.")
        return rate

    @classmethod
    def of(cls, scope: str) -> Rate:
        return cls.parse(getattr(settings, RATE_SETTINGS[scope]))


@dataclass(frozen=True)
class Window:
    count: int  # this event's number within the window, itself included
    retry_after: int  # seconds until the window ends


def _key(name: str, seconds: int, now: float) -> tuple[str, float]:
    slot = int(now // seconds)
    # Hashed: names may hold any character (usernames), and cache keys should not carry them.
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"tinyrag:count:{digest}:{seconds}:{slot}", (slot + 1) * seconds


def count(name: str, seconds: int) -> Window:
    """Count one more event of `name` in the current window of `seconds`, atomically."""
    return count_all([(name, seconds)])[0]


def count_all(events: Sequence[tuple[str, int]]) -> list[Window]:
    """count(name, seconds) for each event, in one cache round trip where the cache can (the
    database cache's `count_up`: one transaction), else one after the other."""
    now = time.time()
    keys, ttls = [], []
    for name, seconds in events:
        key, ends = _key(name, seconds, now)
        keys.append(key)
        ttls.append(max(1, math.ceil(ends - now)))
    if hasattr(cache, "count_up"):
        numbers = cache.count_up([(key, ttl + 1) for key, ttl in zip(keys, ttls, strict=True)])
    else:
        numbers = [_add_and_incr(key, ttl + 1) for key, ttl in zip(keys, ttls, strict=True)]
    return [Window(number, ttl) for number, ttl in zip(numbers, ttls, strict=True)]


def _add_and_incr(key: str, timeout: int) -> int:
    cache.add(key, 0, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add() and incr(): count in a fresh window
        cache.add(key, 0, timeout)
        return cache.incr(key)


def uncount(name: str, seconds: int) -> None:
    """Take back one event counted in the current window (it turned out to be fine)."""
    key, _ = _key(name, seconds, time.time())
    with contextlib.suppress(ValueError):  # the window ended meanwhile: nothing to take back
        cache.decr(key)


def forget(name: str, seconds: int) -> None:
    cache.delete(_key(name, seconds, time.time())[0])


def client_address(request: HttpRequest) -> str:
    """The client's IP address: REMOTE_ADDR, or the entry of X-Forwarded-For that the
    outermost of TINYRAG_TRUSTED_PROXIES proxies appended, when the request did come through
    that many. Entries to its left were written by the client and prove nothing."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TINYRAG_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return remote  # not through the proxies: whoever connected is the client
    return forwarded[-proxies]


def client_network(request: HttpRequest) -> str:
    """The client address as limits count it: an IPv4 address (an IPv4-mapped IPv6 one
    unmapped), or the /64 of an IPv6 address, since one subscriber holds a whole /64."""
    address = client_address(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def requester(request: HttpRequest) -> str:
    """Whom a rate limit counts: the user, or the client network before login."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"address:{client_network(request)}"


def over_rate(scope: str, request: HttpRequest) -> int | None:
    """Count this request against the scope's rate: None if allowed, else seconds to wait."""
    return over_rates((scope,), request)


def over_rates(scopes: Sequence[str], request: HttpRequest) -> int | None:
    """Count this request against each scope's rate, in one round trip: None if every one
    allows it, else the longest wait among those it is over."""
    rates = [Rate.of(scope) for scope in scopes]
    who = requester(request)
    windows = count_all(
        [(f"rate:{scope}:{who}", rate.seconds) for scope, rate in zip(scopes, rates, strict=True)]
    )
    waits = [
        window.retry_after
        for window, rate in zip(windows, rates, strict=True)
        if window.count > rate.limit
    ]
    return max(waits) if waits else None


class SharedRateThrottle(BaseThrottle):
    scopes: tuple[str, ...] = ("api",)

    def allow_request(self, request, view) -> bool:
        self._wait = over_rates(self.scopes, request)
        return self._wait is None

    def wait(self) -> int | None:
        return self._wait


class ApiRateThrottle(SharedRateThrottle):
    """Every API request (REST_FRAMEWORK's default throttle)."""

    scopes = ("api",)


class ApiSearchRateThrottle(SharedRateThrottle):
    """An API search: counted against the API rate and the search rate, as ApiRateThrottle
    plus a search-rate throttle would count it, in one round trip instead of two."""

    scopes = ("api", "search")


class ApiDescribeRateThrottle(SharedRateThrottle):
    """An API description request: the API rate and the describe rate, in one round trip."""

    scopes = ("api", "describe")


TOO_MANY = {
    "search": _("You are searching faster than this server allows; try again in %(wait)s."),
    "describe": _(
        "You are asking for descriptions faster than this server allows; try again in %(wait)s."
    ),
    "signup": _("Too many accounts were created from your address; try again in %(wait)s."),
}


def refusal(scope: str, wait: int) -> str:
    """The message of a refused request: what was refused, and when to try again."""
    return TOO_MANY[scope] % {"wait": in_words(wait)}


def in_words(seconds: int) -> str:
    """A wait for people: "40 seconds", "3 minutes", "2 hours" (rounded up)."""
    if seconds < 90:
        return ngettext("%(n)d second", "%(n)d seconds", seconds) % {"n": seconds}
    if seconds < 90 * 60:
        minutes = math.ceil(seconds / 60)
        return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}
    hours = math.ceil(seconds / 3600)
    return ngettext("%(n)d hour", "%(n)d hours", hours) % {"n": hours}


def too_many_requests(request: HttpRequest, message: str, retry_after: int) -> HttpResponse:
    """A 429 for the pages: the whole page, or for HTMX the message in the page's message
    area (htmx is configured to swap 429 answers, templates/base.html)."""
    if getattr(request, "htmx", False):
        body = render_to_string("partials/messages.html", {"errors": [message]}, request)
        response = HttpResponse(body, status=429)
        response["HX-Retarget"] = "#messages"
        response["HX-Reswap"] = "innerHTML"
    else:
        body = render_to_string("429.html", {"message": message}, request)
        response = HttpResponse(body, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited(scope: str):
    """Page views that spend CPU: counted per user against the scope's rate, as the API."""

    def decorator(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            wait = over_rate(scope, request)
            if wait is not None:
                return too_many_requests(request, refusal(scope, wait), wait)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
