"""Search pages: the search form, results, history (HTMX partials when request.htmx)."""

from __future__ import annotations

import mimetypes
from http import HTTPStatus

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from search.catalog.selectors import class_choices
from search.catalog.views import IMAGE_CACHE_SECONDS
from search.descriptions.selectors import descriptions_enabled, query_descriptions
from search.errors import ApplicationError, NotFound
from search.index.selectors import index_status
from search.queries import services as search_service
from search.queries.models import TEXT_MAX_LENGTH, SearchQuery
from search.queries.selectors import get_query, query_results
from search.queries.uploads import UploadError, check_upload_size
from search.web.pages import login_or_token_required, show_error
from tinyrag_site.throttling import rate_limited


class SearchForm(forms.Form):
    text = forms.CharField(
        required=False,
        max_length=TEXT_MAX_LENGTH,
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


def _page_context(form: SearchForm | None = None, **extra) -> dict:
    status = index_status(load=True)
    dataset = status.manifest.dataset if status.manifest else None
    return {"form": form or SearchForm(dataset_name=dataset), "index": status, **extra}


def _result_context(query: SearchQuery) -> dict:
    return {"query": query, "results": query_results(query), "can_describe": descriptions_enabled()}


@login_not_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """The search page; for a signed-out visitor, the landing page that says what this is."""
    if not request.user.is_authenticated:
        return render(request, "landing.html")
    return render(request, "search/page.html", _page_context())


@require_POST
@rate_limited("search")
def run_search(request: HttpRequest) -> HttpResponse:
    status = index_status(load=True)
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
        except ApplicationError as exc:
            if exc.status == HTTPStatus.SERVICE_UNAVAILABLE:
                error = str(exc)  # the operator's to fix: said above the form, with a 503
            else:  # the sender's input: said on the form, with a 400
                form.add_error("image" if isinstance(exc, UploadError) else None, str(exc))
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
    except NotFound as exc:  # the image this URL names
        raise Http404(str(exc)) from None
    except ApplicationError as exc:
        return show_error(request, exc, back=reverse("search:home"))
    return _to_query(request, query)


def _to_query(request: HttpRequest, query: SearchQuery) -> HttpResponse:
    url = reverse("search:query", args=[query.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def own_query(request: HttpRequest, pk: int) -> SearchQuery:
    """The signed-in user's query `pk`; a 404 for another user's, as for one that is not there."""
    try:
        return get_query(user=request.user, query_id=pk)
    except SearchQuery.DoesNotExist:
        raise Http404("No such query in your history.") from None


@require_GET
def query_detail(request: HttpRequest, pk: int) -> HttpResponse:
    query = own_query(request, pk)
    return render(
        request,
        "search/query.html",
        {
            **_page_context(),
            **_result_context(query),
            "descriptions": query_descriptions(user=request.user, query=query),
        },
    )


@require_POST
@rate_limited("search")
def rerun_query(request: HttpRequest, pk: int) -> HttpResponse:
    query = own_query(request, pk)
    try:
        new = search_service.rerun(query=query)
    except ApplicationError as exc:
        return show_error(request, exc, back=reverse("search:query", args=[pk]))
    return _to_query(request, new)


@login_or_token_required
@require_GET
def query_upload(request: HttpRequest, pk: int) -> FileResponse:
    query = own_query(request, pk)
    if not query.uploaded_image:
        raise Http404("This query has no uploaded image.")
    content_type = mimetypes.guess_type(query.uploaded_image.name)[0] or "application/octet-stream"
    response = FileResponse(query.uploaded_image.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response
