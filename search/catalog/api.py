"""API v1 for the collection: images and classes."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from search.catalog import selectors
from search.catalog.models import Image
from search.web.api import RESPONSE_HEADERS, ApiAuthMixin, absolute_url, errors, object_id


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
        return absolute_url(self, "search:image-file", image.pk)

    @extend_schema_field(OpenApiTypes.URI)
    def get_thumbnail_url(self, image: Image) -> str:
        return absolute_url(self, "search:image-thumb", image.pk)


@extend_schema_serializer(component_name="ImageDetail")
class ImageDetailSerializer(ImageSerializer):
    mode = serializers.CharField(help_text="Pillow mode of the file: RGB, L, ...")


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
            image = selectors.get_image(image_id=id)
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
