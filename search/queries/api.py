"""API v1 for searches and their history."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import (
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from search.catalog.api import ImageSerializer
from search.queries import selectors
from search.queries import services as search_service
from search.queries.models import TEXT_MAX_LENGTH, SearchQuery
from search.queries.routing import Route, accepted_languages, normalise_language
from search.queries.uploads import ALLOWED_FORMATS, UploadError, check_upload_size
from search.web.api import (
    RESPONSE_HEADERS,
    ApiAuthMixin,
    ModelNameField,
    absolute_url,
    errors,
    object_id,
)
from search.web.parsers import SafeJSONParser
from tinyrag_site.throttling import ApiSearchRateThrottle

ROUTES = [route.value for route in Route]
QUERY_LANGUAGES = accepted_languages()
UPLOAD_MEDIA_TYPES = [f"image/{fmt.lower()}" for fmt in ALLOWED_FORMATS]  # image/jpeg, ...


@extend_schema_field(
    {"type": "string", "pattern": f"^({'|'.join(QUERY_LANGUAGES)})?$", "maxLength": 16}
)
class QueryLanguageField(serializers.ChoiceField):
    """A query's language. In the schema a pattern that lists the values, not an enum: enum
    components are named by field, and "language" is the describe API's (page languages)."""


@extend_schema_serializer(component_name="SearchResult")
class ResultSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="1 = the nearest.")
    score = serializers.FloatField(help_text="Cosine similarity to the query.")
    image = ImageSerializer()


@extend_schema_field(
    {
        "type": "object",
        "properties": {
            "class": {"type": "string", "description": "Only images of this wnid."},
            "min_similarity": {
                "type": "number",
                "description": "Only results with at least this cosine similarity.",
            },
        },
        "additionalProperties": False,
    }
)
class FiltersField(serializers.JSONField):
    pass


@extend_schema_serializer(component_name="SearchQuery")
class QuerySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=SearchQuery.Kind.choices)
    text = serializers.CharField(help_text="The text searched for; empty for image queries.")
    top_k = serializers.IntegerField()
    filters = FiltersField()
    encoder = ModelNameField(
        help_text="The model that embedded the query: its hub id, or a local model's name."
    )
    index_name = serializers.CharField()
    index_built_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField()
    created_at = serializers.DateTimeField()
    source_image_id = serializers.IntegerField(
        allow_null=True, help_text="The dataset image of a 'more like this' query."
    )
    language = serializers.CharField(
        help_text="The ISO 639-1 code of the language the text was read in (en, id, ...); "
        "empty for image queries."
    )
    language_chosen = serializers.BooleanField(
        help_text="True: the language was given with the query; false: it was detected."
    )
    route = serializers.ChoiceField(
        choices=[*ROUTES, ""],
        help_text="The text route that embedded it: clip (CLIP's own text encoder, with the "
        "prompt template), multilingual (the multilingual text encoder) or translate "
        "(translated into English, then CLIP); empty for image queries.",
    )
    embedded_text = serializers.CharField(
        help_text="What the text encoder got: the text without leading request words "
        "('search for', 'cari'), or its English translation on the translate route (before "
        "CLIP's prompt template); empty for image queries."
    )
    uploaded_image_url = serializers.SerializerMethodField(
        help_text="The uploaded query image; null if none."
    )

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_uploaded_image_url(self, query: SearchQuery) -> str | None:
        if not query.uploaded_image:
            return None
        return absolute_url(self, "search:query-upload", query.pk)


@extend_schema_serializer(component_name="SearchQueryWithResults")
class QueryWithResultsSerializer(QuerySerializer):
    results = serializers.SerializerMethodField(help_text="Best first.")

    @extend_schema_field(ResultSerializer(many=True))
    def get_results(self, query: SearchQuery) -> list[dict]:
        # a query just run carries its results as saved (services._run): not read back
        results = getattr(query, "saved_results", None)
        if results is None:
            results = selectors.query_results(query)
        return ResultSerializer(results, many=True, context=self.context).data


def render_query(request, query: SearchQuery) -> dict:
    return QueryWithResultsSerializer(query, context={"request": request}).data


SEARCH_THROTTLES = [ApiSearchRateThrottle]  # the API rate and the search rate


def top_k_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1,
        max_value=settings.TINYRAG_TOP_K_MAX,
        required=False,
        help_text=f"How many results (default {settings.TINYRAG_TOP_K_DEFAULT}).",
    )


def class_filter_field(*, allow_blank: bool = False) -> serializers.CharField:
    return serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=allow_blank,
        help_text="Only images of this class (a wnid of the indexed dataset; see /classes/)"
        + ("; empty = all classes, as an HTML form sends it." if allow_blank else "."),
    )


def min_similarity_field() -> serializers.FloatField:
    return serializers.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text="Only results with at least this cosine similarity (0 to 1; the pages show "
        "it x 100 as a percentage). Kept with the query: a rerun applies it again.",
    )


SEARCH_ERRORS = errors(400, 401, 403, 415, 429, 503)


CREATED = OpenApiResponse(QueryWithResultsSerializer, "The saved query with its ranked results.")


class TextSearchApi(ApiAuthMixin, APIView):
    throttle_classes = SEARCH_THROTTLES
    parser_classes = [SafeJSONParser]

    @extend_schema_serializer(component_name="TextSearch")
    class InputSerializer(serializers.Serializer):
        # Blank or whitespace-only text is refused; so is a NUL character (PostgreSQL).
        text = serializers.RegexField(
            r"^[^\x00]*\S[^\x00]*$",
            max_length=TEXT_MAX_LENGTH,
            help_text="In any language (see `language`); leading request words ('search "
            f"for', 'cari') are not searched for; at most {TEXT_MAX_LENGTH} characters.",
        )
        language = QueryLanguageField(
            choices=QUERY_LANGUAGES,
            required=False,
            allow_blank=True,
            help_text="The language of the text: auto (or empty, or absent: detected), en, id, "
            "other (neither: detected among the rest), or the ISO 639-1 code of another "
            "language. English is searched with CLIP's own text encoder, the others on the "
            "multilingual or translate route; the response says which.",
            error_messages={
                # DRF fills in {input} (its own placeholder style for field errors)
                "invalid_choice": gettext_lazy(
                    'Unknown query language "{input}": use auto, en, id, other, or a two-letter '
                    "language code such as de or fr."
                ),
            },
        )
        top_k = top_k_field()
        class_filter = class_filter_field()
        min_similarity = min_similarity_field()

        def validate_language(self, value: str) -> str | None:
            return normalise_language(value)  # None: detect it

    @extend_schema(
        operation_id="search_text",
        summary="Search the collection by a text",
        description="Runs the query against the published index and saves it in your history.",
        tags=["search"],
        request=InputSerializer,
        responses={201: CREATED, **SEARCH_ERRORS},
        parameters=RESPONSE_HEADERS,
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        query = search_service.text_search(user=request.user, **serializer.validated_data)
        return Response(render_query(request, query), status=status.HTTP_201_CREATED)


class ImageSearchApi(ApiAuthMixin, APIView):
    throttle_classes = SEARCH_THROTTLES
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ImageSearch")
    class InputSerializer(serializers.Serializer):
        image = serializers.FileField(
            help_text=f"A {', '.join(ALLOWED_FORMATS)} file, checked by its content."
        )
        top_k = top_k_field()
        # a multipart form sends an unchosen filter as "": accepted, and searched as no filter
        class_filter = class_filter_field(allow_blank=True)
        min_similarity = min_similarity_field()

        def validate(self, attrs):
            # a text beside the image is refused, never dropped (the search page's rule too)
            text = self.initial_data.get("text")
            if isinstance(text, str) and text.strip():
                raise serializers.ValidationError(search_service.TEXT_AND_IMAGE)
            return attrs

        def validate_image(self, upload):
            # Refused before it is read into memory; read_upload checks the bytes again.
            try:
                check_upload_size(upload.size)
            except UploadError as exc:
                raise serializers.ValidationError(str(exc)) from None
            return upload

    @extend_schema(
        operation_id="search_image",
        summary="Search the collection by an uploaded image",
        description="The upload is kept with the query in your history.",
        tags=["search"],
        request=OpenApiRequest(
            InputSerializer,
            encoding={"image": {"contentType": ", ".join(UPLOAD_MEDIA_TYPES)}},
        ),
        responses={201: CREATED, **SEARCH_ERRORS},
        parameters=RESPONSE_HEADERS,
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        query = search_service.image_search(
            user=request.user,
            data=data["image"].read(),
            top_k=data.get("top_k"),
            class_filter=data.get("class_filter"),
            min_similarity=data.get("min_similarity"),
        )
        return Response(render_query(request, query), status=status.HTTP_201_CREATED)


QUERY_ID = object_id("id", "One of your queries.")


def own_query(request, query_id: int) -> SearchQuery:
    try:
        return selectors.get_query(user=request.user, query_id=query_id)
    except SearchQuery.DoesNotExist:
        raise NotFound(gettext_lazy("You have no query with this id.")) from None


class QueryListApi(ApiAuthMixin, ListAPIView):
    @extend_schema_serializer(component_name="SearchQuerySummary")
    class OutputSerializer(QuerySerializer):
        result_count = serializers.IntegerField()
        top_result = serializers.SerializerMethodField(help_text="Rank 1; null if none.")

        @extend_schema_field(ResultSerializer(allow_null=True))
        def get_top_result(self, query: SearchQuery) -> dict | None:
            top = query.top_results[0] if query.top_results else None
            return ResultSerializer(top, context=self.context).data if top else None

    serializer_class = OutputSerializer

    def get_queryset(self):
        return selectors.query_history(user=self.request.user)  # with .top_results

    @extend_schema(
        operation_id="queries_list",
        summary="Your search history, newest first",
        tags=["history"],
        responses={200: OutputSerializer(many=True), **errors(401, 404, 429)},
        parameters=RESPONSE_HEADERS,
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class QueryDetailApi(ApiAuthMixin, APIView):
    # Two use cases on one URL (Django routes a URL to one view): read a query, delete it.

    @extend_schema(
        operation_id="queries_retrieve",
        summary="One of your queries with its results",
        tags=["history"],
        parameters=[QUERY_ID, *RESPONSE_HEADERS],
        responses={
            200: OpenApiResponse(QueryWithResultsSerializer, "The query with its results."),
            **errors(401, 404, 429),
        },
    )
    def get(self, request, id: int):
        return Response(render_query(request, own_query(request, id)))

    @extend_schema(
        operation_id="queries_destroy",
        summary="Delete one of your queries (and its upload)",
        tags=["history"],
        parameters=[QUERY_ID, *RESPONSE_HEADERS],
        responses={204: OpenApiResponse(description="Deleted."), **errors(401, 403, 404, 429)},
    )
    def delete(self, request, id: int):
        search_service.delete_query(query=own_query(request, id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class QueryRerunApi(ApiAuthMixin, APIView):
    throttle_classes = SEARCH_THROTTLES

    @extend_schema(
        operation_id="queries_rerun",
        summary="Run one of your queries again, against today's index",
        description="The new run is a new query in your history.",
        tags=["history"],
        request=None,
        parameters=[QUERY_ID, *RESPONSE_HEADERS],
        responses={201: CREATED, **errors(400, 401, 403, 404, 429, 503)},
    )
    def post(self, request, id: int):
        query = search_service.rerun(query=own_query(request, id))
        return Response(render_query(request, query), status=status.HTTP_201_CREATED)
