"""API v1 for the collection: images and classes."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
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
from search.catalog.models import Image, ImageClass
from search.languages import INDONESIAN
from search.web.api import RESPONSE_HEADERS, ApiAuthMixin, absolute_url, errors, object_id


@extend_schema_serializer(component_name="ImageClassRef")
class ClassRefSerializer(serializers.Serializer):
    wnid = serializers.CharField(help_text="WordNet id (or folder name) of the class.")
    name = serializers.CharField(help_text="Its English name (its first English synonym).")
    display_name = serializers.CharField(
        help_text="Its name in the request's language (Accept-Language: en or id), English "
        "where it has none in that language."
    )


@extend_schema_serializer(component_name="ClassNameTranslation")
class ClassNameTranslationSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The name pages show in this language.")
    synonyms = serializers.ListField(
        child=serializers.CharField(),
        help_text="Every name of the class in this language, the name first.",
    )
    source = serializers.CharField(
        help_text="Where the name came from: wordnet-bahasa (a Wordnet Bahasa lemma), "
        "wiktionary-cldr, tinyrag (supplied by TinyRAG), or collection (the image folder's "
        "class_names.tsv)."
    )


@extend_schema_serializer(component_name="ClassNameTranslations")
class ClassNameTranslationsSerializer(serializers.Serializer):
    id = ClassNameTranslationSerializer(
        required=False, help_text="Bahasa Indonesia; absent where the class has no name in it."
    )


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
            raise NotFound(_("No image with this id.")) from None
        return Response(ImageDetailSerializer(image, context={"request": request}).data)


class ClassListApi(ApiAuthMixin, ListAPIView):
    @extend_schema_serializer(component_name="ImageClass")
    class OutputSerializer(serializers.Serializer):
        wnid = serializers.CharField()
        name = serializers.CharField(help_text="The English name (the first English synonym).")
        names = serializers.ListField(
            child=serializers.CharField(), help_text="All English synonyms, the name first."
        )
        display_name = serializers.CharField(
            help_text="The name in the request's language (Accept-Language: en or id), English "
            "where the class has none in that language."
        )
        translations = serializers.SerializerMethodField(
            help_text="The class's names in the other languages, by ISO 639-1 code."
        )
        dataset = serializers.CharField(source="dataset.name")
        image_count = serializers.IntegerField(help_text="Images of the class, all splits.")

        @extend_schema_field(ClassNameTranslationsSerializer)
        def get_translations(self, image_class: ImageClass) -> dict:
            translated = (image_class.translations or {}).get(INDONESIAN) or {}
            if not (translated.get("name") or translated.get("synonyms")):
                return {}  # none of its own (names_in would fall back to English)
            names = image_class.names_in(INDONESIAN)
            source = translated.get("source") or ""
            return {INDONESIAN: {"name": names[0], "synonyms": names, "source": source}}

    serializer_class = OutputSerializer

    def get_queryset(self):
        return selectors.classes_with_counts()

    @extend_schema(
        operation_id="classes_list",
        summary="The classes of the collection, with their names and image counts",
        description="Each class with its English names, its names in Bahasa Indonesia "
        "(`translations.id`) and `display_name`, the name in the request's language "
        "(Accept-Language: en or id).",
        tags=["collection"],
        responses={200: OutputSerializer(many=True), **errors(401, 404, 429)},
        parameters=RESPONSE_HEADERS,
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
