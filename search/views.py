"""Pages of the search app: thin views that validate, call one service or selector, render.

HTMX requests get the named partial of the page; the same URLs work without JavaScript
(full pages, POST-redirect-GET).
"""

from __future__ import annotations

import io
import mimetypes
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from PIL import Image as PILImage
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from search.index import SearchIndexError
from search.ml.errors import ModelError
from search.models import Description, Image, SearchQuery
from search.selectors import (
    class_choices,
    dataset_overview,
    descriptions_enabled,
    get_description,
    get_query,
    image_file_path,
    index_status,
    query_history,
    query_results,
)
from search.services import describe as describe_service
from search.services import search as search_service
from search.services.accounts import rotate_api_token
from search.services.search import SearchInputError
from search.services.uploads import UploadError, check_upload_size
from tinyrag_site.throttling import rate_limited

# What a person can act on: shown as a message, never a 500.
USER_FACING_ERRORS = (
    SearchInputError,
    UploadError,
    describe_service.DescriptionsDisabled,
    describe_service.DescriptionQueueFull,
    SearchIndexError,
    ModelError,
)
THUMBNAIL_SIDE = 160  # px: a crisp grid cell on high-density screens
IMAGE_CACHE_SECONDS = 24 * 3600  # dataset files never change under the same id


class SearchForm(forms.Form):
    text = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "Search in any language"}),
    )
    image = forms.FileField(required=False)
    top_k = forms.IntegerField()  # bounds from settings, set per form
    class_filter = forms.ChoiceField(required=False)

    def __init__(self, *args, dataset_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["top_k"] = forms.IntegerField(
            label="Results",
            min_value=1,
            max_value=settings.TINYRAG_TOP_K_MAX,
            initial=settings.TINYRAG_TOP_K_DEFAULT,
        )
        self.fields["class_filter"].choices = [("", "All classes")] + [
            (c.wnid, f"{c.name} ({c.wnid})") for c in class_choices(dataset_name)
        ]

    def clean_image(self):
        # Refused by its size before it is read into memory (as the API does).
        image = self.cleaned_data.get("image")
        if image:
            try:
                check_upload_size(image.size)
            except UploadError as exc:
                raise forms.ValidationError(str(exc)) from None
        return image

    def clean(self):
        data = super().clean()
        if not (data.get("text") or "").strip() and not data.get("image"):
            raise forms.ValidationError("Type a text or choose an image.")
        return data


class DescribeForm(forms.Form):
    """What a Describe button sends: a result's id (none: the query's upload), the context."""

    image_id = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    context = forms.ChoiceField(choices=Description.Context.choices, required=False)

    def clean_context(self) -> str:
        return self.cleaned_data["context"] or Description.Context.RETRIEVED

    def error_line(self) -> str:
        return " ".join(f"{name}: {' '.join(errors)}" for name, errors in self.errors.items())


def _page_context(form: SearchForm | None = None, **extra) -> dict:
    status = index_status()
    dataset = status.manifest.dataset if status.manifest else None
    return {"form": form or SearchForm(dataset_name=dataset), "index": status, **extra}


def login_or_token_required(view):
    """For the file views that API responses link to: a session, or `Authorization: Token`."""

    @login_not_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            try:
                found = TokenAuthentication().authenticate(request)
            except AuthenticationFailed:
                found = None
            if found is None:
                return redirect_to_login(request.get_full_path())
            request.user = found[0]
        return view(request, *args, **kwargs)

    return wrapper


def _result_context(query: SearchQuery) -> dict:
    return {"query": query, "results": query_results(query), "can_describe": descriptions_enabled()}


@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    return render(request, "search/page.html", _page_context())


@require_POST
@rate_limited("search")
def run_search(request: HttpRequest) -> HttpResponse:
    status = index_status()
    form = SearchForm(
        request.POST,
        request.FILES,
        dataset_name=status.manifest.dataset if status.manifest else None,
    )
    error = None
    if form.is_valid():
        data = form.cleaned_data
        common = {
            "user": request.user,
            "top_k": data["top_k"],
            "class_filter": data["class_filter"] or None,
        }
        try:
            if data.get("image"):
                query = search_service.image_search(data=data["image"].read(), **common)
            else:
                query = search_service.text_search(text=data["text"], **common)
        except (SearchInputError, UploadError) as exc:
            form.add_error("image" if isinstance(exc, UploadError) else None, str(exc))
        except (SearchIndexError, ModelError) as exc:
            error = str(exc)
        else:
            if request.htmx:
                response = render(request, "search/page.html#results", _result_context(query))
                response["HX-Push-Url"] = reverse("search:query", args=[query.pk])
                return response
            return redirect("search:query", pk=query.pk)
    context = _page_context(form, error=error)
    if request.htmx:
        return render(request, "search/page.html#results", context)
    return render(request, "search/page.html", context, status=503 if error else 400)


@require_POST
@rate_limited("search")
def similar(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        query = search_service.similar_search(user=request.user, image_id=pk)
    except SearchInputError as exc:
        raise Http404(str(exc)) from None
    except (SearchIndexError, ModelError) as exc:
        messages.error(request, str(exc))
        return redirect("search:home")
    return _to_query(request, query)


def _to_query(request: HttpRequest, query: SearchQuery) -> HttpResponse:
    url = reverse("search:query", args=[query.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _own_query(request: HttpRequest, pk: int) -> SearchQuery:
    try:
        return get_query(user=request.user, query_id=pk)
    except SearchQuery.DoesNotExist:
        raise Http404("No such query in your history.") from None


@require_GET
def query_detail(request: HttpRequest, pk: int) -> HttpResponse:
    query = _own_query(request, pk)
    return render(
        request,
        "search/query.html",
        {
            **_page_context(),
            **_result_context(query),
            "descriptions": query.descriptions.select_related("image__image_class"),
        },
    )


def _own_description(request: HttpRequest, pk: int) -> Description:
    try:
        description = get_description(user=request.user, description_id=pk)
    except Description.DoesNotExist:
        raise Http404("No such description in your history.") from None
    return describe_service.with_stall_check(description)


def _describe(request: HttpRequest, *, query: SearchQuery, back: str, **request_args):
    """Request a description; an error goes back to the page as a message (or HTMX card)."""
    try:
        description = describe_service.request_description(query=query, **request_args)
    except USER_FACING_ERRORS as exc:
        if request.htmx:
            return render(request, "search/description.html#card", {"error": str(exc)})
        messages.error(request, str(exc))
        return redirect(back)
    if request.htmx:
        return render(request, "search/description.html#card", {"description": description})
    return redirect("search:description", pk=description.pk)


@require_POST
@rate_limited("describe")
def describe(request: HttpRequest, pk: int) -> HttpResponse:
    query = _own_query(request, pk)
    form = DescribeForm(request.POST)
    if not form.is_valid():  # the buttons never send this: a 400 that says why, in one line
        return HttpResponse(form.error_line(), status=400, content_type="text/plain; charset=utf-8")
    return _describe(
        request,
        query=query,
        back=reverse("search:query", args=[pk]),
        image_id=form.cleaned_data["image_id"],
        context_mode=form.cleaned_data["context"],
    )


@require_GET
def description_detail(request: HttpRequest, pk: int) -> HttpResponse:
    description = _own_description(request, pk)
    template = "search/description.html#card" if request.htmx else "search/description.html"
    return render(request, template, {"description": description})


@require_POST
@rate_limited("describe")
def regenerate_description(request: HttpRequest, pk: int) -> HttpResponse:
    old = _own_description(request, pk)
    return _describe(
        request,
        query=old.query,
        back=reverse("search:description", args=[pk]),
        image_id=old.image_id,
        context_mode=old.context_mode,
        regenerate=True,
    )


@require_POST
@rate_limited("search")
def rerun_query(request: HttpRequest, pk: int) -> HttpResponse:
    query = _own_query(request, pk)
    try:
        new = search_service.rerun(query=query)
    except USER_FACING_ERRORS as exc:
        messages.error(request, str(exc))
        return redirect("search:query", pk=pk)
    return _to_query(request, new)


@require_POST
def delete_query(request: HttpRequest, pk: int) -> HttpResponse:
    search_service.delete_query(query=_own_query(request, pk))
    if request.htmx:
        return HttpResponse("")  # the row swaps itself out
    messages.success(request, "Query deleted.")
    return redirect("search:history")


@require_POST
def delete_history(request: HttpRequest) -> HttpResponse:
    count = search_service.delete_history(user=request.user)
    messages.success(request, f"Deleted {count} queries.")
    return redirect("search:history")


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    page = Paginator(query_history(user=request.user), 20).get_page(request.GET.get("page"))
    template = "search/history.html#rows" if request.htmx else "search/history.html"
    return render(request, template, {"page": page})


@login_or_token_required
@require_GET
def query_upload(request: HttpRequest, pk: int) -> FileResponse:
    query = _own_query(request, pk)
    if not query.uploaded_image:
        raise Http404("This query has no uploaded image.")
    content_type = mimetypes.guess_type(query.uploaded_image.name)[0] or "application/octet-stream"
    response = FileResponse(query.uploaded_image.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


def _dataset_image(pk: int) -> tuple[Image, object]:
    image = get_object_or_404(Image.objects.select_related("dataset"), pk=pk)
    try:
        path = image_file_path(image)
    except FileNotFoundError:
        raise Http404("Image file not found.") from None
    if not path.is_file():
        raise Http404("Image file not found.")
    return image, path


@login_or_token_required
@require_GET
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    _, path = _dataset_image(pk)
    content_type = mimetypes.guess_type(path.name.lower())[0] or "application/octet-stream"
    response = FileResponse(path.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


@login_or_token_required
@require_GET
def image_thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    _, path = _dataset_image(pk)
    try:
        with PILImage.open(path) as img:
            thumb = img.convert("RGB")
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # shrinks large images, never enlarges
    except OSError:
        raise Http404("Image file cannot be read.") from None
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=85)
    response = HttpResponse(buf.getvalue(), content_type="image/jpeg")
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response


@require_GET
def collections(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "search/collections.html",
        {"datasets": dataset_overview(), "index": index_status()},
    )


@never_cache  # the page shows the API token: never kept by a browser or a proxy
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        rotate_api_token(user=request.user)
        messages.success(request, "A new API token was created; the old one no longer works.")
        return redirect("search:profile")
    token, _ = Token.objects.get_or_create(user=request.user)
    return render(request, "search/profile.html", {"token": token})
