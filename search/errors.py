"""One error base for everything a person or a client can act on (HackSoft's ApplicationError).

A domain error says what went wrong in one line and carries what the two front doors need: a
`code` for API clients and an HTTP `status`. The API answers every one in one place from
those two (search/web/api_errors.py); pages catch the one base and show its message where
the user was (search/web/pages.py). An error that only the server's operator can fix also
has `for_users`: what a page says instead to someone who is not staff (staff read the
message itself). A new error is one class, here or beside its domain, and nothing else.
Anything that is not an ApplicationError is a bug: a 500, logged with its traceback.
"""

from __future__ import annotations

from http import HTTPStatus

from django.utils.translation import gettext_lazy as _


class ApplicationError(Exception):
    code: str = "error"
    status: int = HTTPStatus.BAD_REQUEST
    retry_after: int | None = None  # seconds, sent as Retry-After where it is set
    # a page's words for non-staff, where only an operator can act (gettext_lazy: in the
    # reader's language)
    for_users: str | None = None


class InvalidInput(ApplicationError):
    """The request cannot run as given; the message tells its sender what to change."""

    code = "invalid"


class NotFound(ApplicationError):
    code = "not_found"
    status = HTTPStatus.NOT_FOUND


class Unavailable(ApplicationError):
    """The server is not ready for this (no index, a model that does not load): it is the
    operator's to fix, and the message says how."""

    code = "unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE
    for_users = _(
        "This is not available right now. Try again in a few minutes; if it stays like this, "
        "tell the people who run this site."
    )


class TooManyRequests(ApplicationError):
    code = "throttled"
    status = HTTPStatus.TOO_MANY_REQUESTS
