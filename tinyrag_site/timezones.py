"""Times in the viewer's time zone: the one chosen on the Account page (the `tz_choice`
cookie), else the browser's (static/js/app.js sets the `tz` cookie from
`Intl.DateTimeFormat().resolvedOptions().timeZone`); every page renders its dates in it.
Without either (first visit, no JavaScript) pages use settings.TIME_ZONE."""

from __future__ import annotations

import re
import zoneinfo
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "tz"  # the browser's zone, set by static/js/app.js on every page
CHOICE_COOKIE = "tz_choice"  # the viewer's own choice, set from the Account page
CHOICE_MAX_AGE = 365 * 24 * 3600  # seconds: a choice lasts a year on this browser
# An IANA name ("Asia/Jakarta", "America/Argentina/Buenos_Aires", "UTC"): nothing that could
# reach outside the zoneinfo database as a path.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,30}(/[A-Za-z0-9_+\-]{1,30}){0,2}")


def zone_from(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The time zone `name` names, or None for an unknown or malformed one."""
    if not name or not _ZONE_NAME.fullmatch(name):
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


# Old aliases of the IANA database's area/city names: offered once, under the city's name.
_LEGACY_ZONES = ("Etc/", "posix", "right/", "SystemV/")
_LEGACY_ZONES += ("US/", "Canada/", "Brazil/", "Chile/", "Mexico/")  # country-named aliases


@cache
def zone_choices() -> tuple[str, ...]:
    """The zones the Account page offers: the IANA areas' cities and UTC, sorted; not the
    legacy aliases ("US/Eastern", "Etc/GMT+5", "posix/..."), which name the same clocks."""
    names = {
        name
        for name in zoneinfo.available_timezones()
        if "/" in name and not name.startswith(_LEGACY_ZONES) and _ZONE_NAME.fullmatch(name)
    }
    return ("UTC", *sorted(names))


def viewer_zone(request: HttpRequest) -> tuple[zoneinfo.ZoneInfo | None, str | None]:
    """The viewer's zone and where it came from ("account" or "browser"); (None, None) for
    the server's own (settings.TIME_ZONE)."""
    chosen = zone_from(request.COOKIES.get(CHOICE_COOKIE))
    if chosen is not None:
        return chosen, "account"
    browser = zone_from(request.COOKIES.get(COOKIE))
    if browser is not None:
        return browser, "browser"
    return None, None


def zone_label() -> str:
    """The active time zone as the pages name it: its IANA name, with its abbreviation where
    it has one in letters ("Asia/Jakarta (WIB)", "Europe/Paris (CET)"; "UTC";
    "Asia/Dubai", whose abbreviation is "+04")."""
    zone = timezone.get_current_timezone()
    name = str(zone)
    abbreviation = timezone.localtime(timezone=zone).tzname() or ""
    if abbreviation.isalpha() and abbreviation != name:
        return f"{name} ({abbreviation})"
    return name


def remember_choice(response: HttpResponse, name: str | None) -> None:
    """Keep the viewer's chosen zone on `response` (a name from zone_choices()), or forget it
    (None: times follow the browser again)."""
    if name is None:
        response.delete_cookie(CHOICE_COOKIE, samesite="Lax")
        return
    response.set_cookie(
        CHOICE_COOKIE,
        name,
        max_age=CHOICE_MAX_AGE,
        samesite="Lax",
        httponly=True,  # read by the server only
        secure=settings.SESSION_COOKIE_SECURE,
    )


class TimezoneMiddleware:
    """Activates the viewer's time zone for the request (request.timezone_source says which:
    "account", "browser" or None for the server's)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone, request.timezone_source = viewer_zone(request)
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
