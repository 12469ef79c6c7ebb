"""REST API v1: one view per use case, thin (validate, call one service or selector, render).

Every answer an endpoint can give is in its drf-spectacular annotation, errors included, so the
schema at /api/schema/ is exact: a client (or schemathesis) can rely on it.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from search import selectors
from search.api_errors import SafeJSONParser
from search.ml.names import display_model_id
from search.models import Description, Image, SearchQuery
from search.services import describe as describe_service
from search.services import search as search_service
from search.services.uploads import ALLOWED_FORMATS, UploadError, check_upload_size
from tinyrag_site.throttling import ApiRateThrottle, DescribeRateThrottle, SearchRateThrottle

UPLOAD_MEDIA_TYPES = [f"image/{fmt.lower()}" for fmt in ALLOWED_FORMATS]  # image/jpeg, ...

# --- the error format (search/api_errors.py) ----------------------------------------------


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
        {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
        OpenApiParameter.PATH,
        description=what,
    )


# --- shared output shapes -----------------------------------------------------------------


def absolute_url(serializer: serializers.Serializer, name: str, pk: int) -> str:
    return serializer.context["request"].build_absolute_uri(reverse(name, args=[pk]))


class ModelNameField(serializers.CharField):
    """A model id as clients see it: a hub id, or a local directory's name, never its path."""

    def to_representation(self, value) -> str:
        return display_model_id(super().to_representation(value))


@extend_schema_serializer(component_name="ImageClassRef")
class ClassRefSerializer(serializers.Serializer):
    wnid = serializers.CharField(help_text="WordNet id (or folder name) of the class.")
    name = serializers.CharField(help_text="Its first synonym.")


@extend_schema_serializer(component_name="Image")
class ImageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="The image file (login required).")
    thumbnail_url = serializers.SerializerMethodField(help_text="A small JPEG of it.")
    split = serializers.ChoiceField(choices=Image.Split.choices)
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    dataset = serializers.CharField(source="dataset.name")

    def get_fields(self):
        fields = super().get_fields()
        # "class" is a Python keyword: it cannot be declared as an attribute.
        fields["class"] = ClassRefSerializer(
            source="image_class", allow_null=True, help_text="Null for unlabelled (test) images."
        )
        return fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, image: Image) -> str:
        return absolute_url(self, "search:image", image.pk)

    @extend_schema_field(OpenApiTypes.URI)
    def get_thumbnail_url(self, image: Image) -> str:
        return absolute_url(self, "search:image-thumb", image.pk)


@extend_schema_serializer(component_name="ImageDetail")
class ImageDetailSerializer(ImageSerializer):
    mode = serializers.CharField(help_text="Pillow mode of the file: RGB, L, ...")


@extend_schema_serializer(component_name="SearchResult")
class ResultSerializer(serializers.Serializer):
    rank = serializers.IntegerField(help_text="1 = the nearest.")
    score = serializers.FloatField(help_text="Cosine similarity to the query.")
    image = ImageSerializer()


@extend_schema_field(
    {
        "type": "object",
        "properties": {"class": {"type": "string", "description": "Only images of this wnid."}},
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
        return ResultSerializer(
            selectors.query_results(query), many=True, context=self.context
        ).data


def render_query(request, query: SearchQuery) -> dict:
    return QueryWithResultsSerializer(query, context={"request": request}).data


# --- views --------------------------------------------------------------------------------


SEARCH_THROTTLES = [ApiRateThrottle, SearchRateThrottle]


class ApiAuthMixin:
    # Token first: DRF takes WWW-Authenticate from the first class, so an anonymous request
    # gets 401 + `WWW-Authenticate: Token`; with the session first it would be a bare 403.
    authentication_classes = [TokenAuthentication, SessionAuthentication]


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
            max_length=500,
            help_text="Any language the configured text encoder reads; at most 500 characters.",
        )
        top_k = top_k_field()
        class_filter = class_filter_field()

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
        # a multipart form sends an unchosen filter as "": DRF reads that as absent
        class_filter = class_filter_field(allow_blank=True)

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
        )
        return Response(render_query(request, query), status=status.HTTP_201_CREATED)


QUERY_ID = object_id("id", "One of your queries.")


def own_query(request, query_id: int) -> SearchQuery:
    try:
        return selectors.get_query(user=request.user, query_id=query_id)
    except SearchQuery.DoesNotExist:
        raise NotFound("You have no query with this id.") from None


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


class ImageDetailApi(ApiAuthMixin, APIView):
    @extend_schema(
        operation_id="images_retrieve",
        summary="An image of the collection",
        tags=["collection"],
        parameters=[object_id("id", "An image of the collection."), *RESPONSE_HEADERS],
        responses={200: ImageDetailSerializer, **errors(401, 404, 429)},
    )
    def get(self, request, id: int):
        try:
            image = Image.objects.select_related("dataset", "image_class").get(pk=id)
        except Image.DoesNotExist:
            raise NotFound("No image with this id.") from None
        return Response(ImageDetailSerializer(image, context={"request": request}).data)


class ClassListApi(ApiAuthMixin, ListAPIView):
    @extend_schema_serializer(component_name="ImageClass")
    class OutputSerializer(serializers.Serializer):
        wnid = serializers.CharField()
        name = serializers.CharField()
        names = serializers.ListField(child=serializers.CharField(), help_text="All synonyms.")
        dataset = serializers.CharField(source="dataset.name")
        image_count = serializers.IntegerField(help_text="Images of the class, all splits.")

    serializer_class = OutputSerializer

    def get_queryset(self):
        return selectors.classes_with_counts()

    @extend_schema(
        operation_id="classes_list",
        summary="The classes of the collection, with image counts",
        tags=["collection"],
        responses={200: OutputSerializer(many=True), **errors(401, 404, 429)},
        parameters=RESPONSE_HEADERS,
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- descriptions -------------------------------------------------------------------------


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
    context = serializers.JSONField(
        help_text="k, the neighbours (image id, wnid, score) and the candidate classes."
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
    throttle_classes = [ApiRateThrottle, DescribeRateThrottle]
    parser_classes = [SafeJSONParser]

    @extend_schema_serializer(component_name="DescriptionRequest")
    class InputSerializer(serializers.Serializer):
        image_id = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=2**63 - 1,
            help_text="A result (or the source image) of the query; omit to describe the "
            "query's uploaded image.",
        )
        context = serializers.ChoiceField(
            choices=Description.Context.choices,
            default=Description.Context.RETRIEVED,
            help_text="retrieved: the labels of the image's nearest neighbours; none: the "
            "image alone.",
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
        try:
            description = describe_service.request_description(
                query=query,
                image_id=data.validated_data.get("image_id"),
                context_mode=data.validated_data["context"],
                regenerate=data.validated_data["regenerate"],
            )
        except describe_service.DescriptionQueueFull as exc:
            raise Throttled(wait=exc.retry_after, detail=str(exc)) from None
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
            raise NotFound("No such description among yours.") from None
        description = describe_service.with_stall_check(description)
        return Response(DescriptionSerializer(description, context={"request": request}).data)
