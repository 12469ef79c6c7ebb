"""API v1 for descriptions: request one, poll it."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from search.catalog.api import ImageSerializer
from search.descriptions import selectors
from search.descriptions import services as describe_service
from search.descriptions.models import Description
from search.languages import PAGE_LANGUAGES, page_language
from search.queries.api import own_query
from search.web import PK_MAX
from search.web.api import RESPONSE_HEADERS, ApiAuthMixin, ModelNameField, errors, object_id
from search.web.parsers import SafeJSONParser
from tinyrag_site.throttling import ApiDescribeRateThrottle


@extend_schema_serializer(component_name="Description")
class DescriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    query_id = serializers.IntegerField()
    image = ImageSerializer(allow_null=True, help_text="Null: the query's uploaded image.")
    status = serializers.ChoiceField(
        choices=Description.Status.choices,
        help_text="queued -> running -> done | failed; poll until done or failed.",
    )
    text = serializers.CharField(allow_blank=True, help_text="The text so far.")
    tokens = serializers.IntegerField(help_text="Tokens generated; counted once done.")
    context_mode = serializers.ChoiceField(choices=Description.Context.choices)
    language = serializers.ChoiceField(
        choices=PAGE_LANGUAGES,
        help_text="The language it is written in (ISO 639-1): en (English) or id (Bahasa "
        "Indonesia).",
    )
    context = serializers.JSONField(
        help_text="k, the neighbours (image id, wnid, score) and the candidate classes (each "
        "by its wnid, named in the description's language)."
    )
    backend = serializers.CharField()
    model = ModelNameField(
        help_text="The model that wrote it: its hub id, or a local model's name."
    )
    prompt_version = serializers.CharField()
    time_to_first_token_ms = serializers.FloatField(
        allow_null=True, help_text="From the start of generation to its first word."
    )
    tokens_per_second = serializers.FloatField(
        allow_null=True, help_text="Decoding rate after the first word."
    )
    error = serializers.CharField(allow_blank=True)
    reused = serializers.SerializerMethodField(
        help_text="True when the text is shared with an identical request's generation."
    )
    reused_from = serializers.SerializerMethodField(
        help_text="Your own description this one shares its text with; null when none, or "
        "when it is another user's."
    )

    def get_reused(self, description: Description) -> bool:
        return description.reused_from_id is not None

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_reused_from(self, description: Description) -> int | None:
        source = description.reused_from
        if source is None or source.query.user_id != description.query.user_id:
            return None
        return source.pk

    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


DESCRIPTION_ID = object_id("id", "One of your descriptions.")


class DescriptionCreateApi(ApiAuthMixin, APIView):
    throttle_classes = [ApiDescribeRateThrottle]  # the API rate and the describe rate
    parser_classes = [SafeJSONParser]

    @extend_schema_serializer(component_name="DescriptionRequest")
    class InputSerializer(serializers.Serializer):
        image_id = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=PK_MAX,
            help_text="A result (or the source image) of the query; omit to describe the "
            "query's uploaded image.",
        )
        context = serializers.ChoiceField(
            choices=Description.Context.choices,
            default=Description.Context.RETRIEVED,
            help_text="retrieved: the labels of the image's nearest neighbours; none: the "
            "image alone.",
        )
        language = serializers.ChoiceField(
            choices=PAGE_LANGUAGES,
            required=False,
            help_text="The language to write it in: en (English) or id (Bahasa Indonesia). "
            "Default: the request's language (Accept-Language, or the language cookie), "
            "English when it is neither. An identical description is reused only in the "
            "same language.",
        )
        regenerate = serializers.BooleanField(
            default=False, help_text="Generate anew even when an identical description exists."
        )

    @extend_schema(
        operation_id="descriptions_create",
        summary="Describe an image of one of your queries (in the background)",
        description="Answers at once with the description row: `done` when an identical one "
        "was reused, else `queued`; poll GET /descriptions/{id} for the text as it grows.",
        tags=["descriptions"],
        request=InputSerializer,
        parameters=[object_id("id", "One of your queries."), *RESPONSE_HEADERS],
        responses={202: DescriptionSerializer, **errors(400, 401, 403, 404, 409, 415, 429, 503)},
    )
    def post(self, request, id: int):
        query = own_query(request, id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        description = describe_service.request_description(
            query=query,
            image_id=data.validated_data.get("image_id"),
            context_mode=data.validated_data["context"],
            language=data.validated_data.get("language") or page_language(),
            regenerate=data.validated_data["regenerate"],
        )
        body = DescriptionSerializer(description, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class DescriptionDetailApi(ApiAuthMixin, APIView):
    @extend_schema(
        operation_id="descriptions_retrieve",
        summary="A description: its status and the text so far",
        tags=["descriptions"],
        parameters=[DESCRIPTION_ID, *RESPONSE_HEADERS],
        responses={200: DescriptionSerializer, **errors(401, 404, 429)},
    )
    def get(self, request, id: int):
        try:
            description = selectors.get_description(user=request.user, description_id=id)
        except Description.DoesNotExist:
            raise NotFound(_("No such description among yours.")) from None
        description = describe_service.with_stall_check(description)
        return Response(DescriptionSerializer(description, context={"request": request}).data)
