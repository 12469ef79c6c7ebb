"""One error format for every API error: {"error": {"code", "message", "fields"?}}.

`exception_handler` is REST_FRAMEWORK["EXCEPTION_HANDLER"]; `not_found` answers URLs under
/api/v1/ that match no route, so a client never sees Django's HTML 404 page.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from search.errors import ApplicationError

# Django raises these while reading an oversized or overstuffed body; left alone they would
# become an HTML 400 page.
_BODY_LIMIT_ERRORS = {
    RequestDataTooBig: _("The request body is too large."),
    TooManyFieldsSent: _("The request has too many fields."),
    TooManyFilesSent: _("The request has too many files."),
}


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def exception_handler(exc, context):
    """DRF's handler, reshaped. A domain error (search.errors.ApplicationError) answers with
    its own code and status; a 404 and a 429 go through DRF's own, so they read (and a 429
    sends Retry-After) like every other not-found and throttled answer."""
    if isinstance(exc, ApplicationError):
        if exc.status == status.HTTP_404_NOT_FOUND:
            exc = exceptions.NotFound(str(exc))
        elif exc.status == status.HTTP_429_TOO_MANY_REQUESTS:
            exc = exceptions.Throttled(wait=exc.retry_after, detail=str(exc))
        else:
            return Response(error_body(exc.code, str(exc)), status=exc.status)
    elif type(exc) in _BODY_LIMIT_ERRORS:
        exc = exceptions.ValidationError(_BODY_LIMIT_ERRORS[type(exc)])
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling logs it with its traceback
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc.detail)
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        response.data = error_body(_code(detail, exc), _flatten(detail) or str(exc))
    return response


def _validation_body(detail) -> dict:
    """Field errors under "fields" (one line each); errors about the whole input as message."""
    if not isinstance(detail, dict):
        return error_body("invalid", _flatten(detail))
    fields = dict(detail)
    general = [
        fields.pop(key) for key in ("detail", api_settings.NON_FIELD_ERRORS_KEY) if key in fields
    ]
    message = _flatten(general) if general else gettext("The request is not valid.")
    return error_body("invalid", message, {name: _flatten(v) for name, v in fields.items()})


def _code(detail, exc) -> str:
    code = getattr(detail, "code", None) or getattr(exc, "default_code", None)
    return str(code or "error")


def _flatten(value) -> str:
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    return str(value)


@csrf_exempt  # like the DRF views: a POST to a wrong URL is a 404, not an HTML CSRF 403
def not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """Any URL under the API that no route matches (a non-numeric id, a typo)."""
    return JsonResponse(
        error_body("not_found", gettext("No API endpoint at %(path)s.") % {"path": request.path}),
        status=status.HTTP_404_NOT_FOUND,
    )
