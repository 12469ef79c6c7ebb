"""The site's error pages: 404 and 500 in the site's layout (templates/404.html, 500.html;
403.html and 403_csrf.html are found by Django's own handlers).

The 500 handler: a lost database or shared cache is a 503 ("try again shortly"), not
a crash, and any other failure under /api/ is a 500 in the API's error format.

Django calls `handler500` inside the `except` block of whatever failed, so `sys.exc_info()`
still names the exception. When the database is down or restarting (PostgreSQL restarted, a
network blip, SQLite locked for too long), every page and API call fails the same way; the
client is told the service is unavailable, in the API's error format under /api/, with a
Retry-After. Django reconnects by itself on the next request once the database is back
(`conn_health_checks`), so nothing needs restarting.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import Resolver404
from django.utils.translation import gettext, gettext_noop
from django.views.defaults import server_error as django_server_error
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from search.ops.health import check_database
from search.web.api_errors import error_body

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# In English for the log, translated for whoever reads the answer.
DATABASE_UNAVAILABLE = gettext_noop("The database is unavailable; try again in a few seconds.")
CACHE_UNAVAILABLE = gettext_noop("The shared cache is unavailable; try again in a few seconds.")
SERVER_ERROR = gettext_noop("The server failed to answer this request; the error is logged.")


def database_unavailable(exc: BaseException | None) -> bool:
    """A connection-level error while the database does not answer a `SELECT 1` now.

    OperationalError covers a refused or terminated connection, but also SQLite's "no such
    table" (a missing migration): that one, with the database answering, stays a 500.
    """
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    return not check_database().ok


def cache_unavailable(exc: BaseException | None) -> bool:
    """Redis (TINYRAG_CACHE_URL=redis://...) refused, dropped or timed out the connection:
    every rate-limited request fails the same way until it is back."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def server_error(request: HttpRequest) -> HttpResponse:
    exc = sys.exc_info()[1]
    api = request.path.startswith("/api/")
    if database_unavailable(exc):
        message = DATABASE_UNAVAILABLE
    elif cache_unavailable(exc):
        message = CACHE_UNAVAILABLE
    elif api:  # a client of the API reads its error format, never an HTML page
        return JsonResponse(error_body("server_error", gettext(SERVER_ERROR)), status=500)
    else:
        return django_server_error(request)
    logger.warning("%s %s", message, str(exc).splitlines()[0] if str(exc) else repr(exc))
    if api:
        response = JsonResponse(error_body("unavailable", gettext(message)), status=503)
    else:
        page = render_to_string("503.html", {"message": gettext(message)})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The branded 404 (the API answers its own, in JSON: search.web.api_errors). It repeats
    what the view said was missing ("No such query in your history."), never the URL
    resolver's internals for an unknown address."""
    said = exception.args[0] if exception.args else None
    reason = said if isinstance(said, str) and not isinstance(exception, Resolver404) else ""
    return render(request, "404.html", {"reason": reason}, status=404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """The branded 403 for an expired or missing CSRF token, rendered with the request so a
    signed-in visitor keeps their navigation (Django's own view renders without it)."""
    return render(request, "403_csrf.html", status=403)
