"""Times in the viewer's time zone: the browser names it (static/js/app.js sets the `tz`
cookie from `Intl.DateTimeFormat().resolvedOptions().timeZone`) and every page renders its
dates in it; without the cookie (first visit, no JavaScript) pages use settings.TIME_ZONE."""

from __future__ import annotations

import re
import zoneinfo

from django.utils import timezone

COOKIE = "tz"
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


class TimezoneMiddleware:
    """Activates the viewer's time zone (the `tz` cookie) for the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = zone_from(request.COOKIES.get(COOKIE))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
