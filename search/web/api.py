"""What every API view shares: the documented error responses, authentication, links."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from search.ml.names import display_model_id
from search.web import PK_MAX


@extend_schema_serializer(component_name="ErrorDetail")
class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, not_authenticated, ...")
    message = serializers.CharField(help_text="One line for a person.")
    fields = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="Per input field, what is wrong with it (validation errors only).",
    )


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The input is not valid: error.fields names the fields, error.message says why.",
    401: "No credentials, or invalid ones: send `Authorization: Token <key>` or a session.",
    403: "Session authentication without a valid CSRF token.",
    404: "No such object among yours (another user's query is not found either), or no page.",
    415: "The request body is not in a media type this endpoint accepts.",
    429: "Too many requests: wait for Retry-After seconds.",
    409: "Descriptions are disabled on this server (TINYRAG_VLM_BACKEND=none).",
    503: "Search is not available: no published index, or a model that cannot be loaded.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, ERROR_DESCRIPTIONS[code]) for code in codes}


RESPONSE_HEADERS = [
    OpenApiParameter(
        "WWW-Authenticate",
        str,
        OpenApiParameter.HEADER,
        response=[401],
        description="The scheme to authenticate with: `Token`.",
    ),
    OpenApiParameter(
        "Retry-After",
        int,
        OpenApiParameter.HEADER,
        response=[429],
        description="Seconds until the next request is allowed.",
    ),
]


def object_id(name: str, what: str) -> OpenApiParameter:
    """A primary key in the path (search/api_urls.py routes only 1..2^63-1, else 404)."""
    return OpenApiParameter(
        name,
        {"type": "integer", "format": "int64", "minimum": 1, "maximum": PK_MAX},
        OpenApiParameter.PATH,
        description=what,
    )


def absolute_url(serializer: serializers.Serializer, name: str, pk: int) -> str:
    return serializer.context["request"].build_absolute_uri(reverse(name, args=[pk]))


class ModelNameField(serializers.CharField):
    """A model id as clients see it: a hub id, or a local directory's name, never its path."""

    def to_representation(self, value) -> str:
        return display_model_id(super().to_representation(value))


class ApiAuthMixin:
    # Token first: DRF takes WWW-Authenticate from the first class, so an anonymous request
    # gets 401 + `WWW-Authenticate: Token`; with the session first it would be a bare 403.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
