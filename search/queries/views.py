"""Search pages: the search form, results, history (HTMX partials when request.htmx)."""

from __future__ import annotations

import mimetypes
from http import HTTPStatus

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from search.catalog.choices import class_options
from search.catalog.selectors import class_choices
from search.catalog.views import IMAGE_CACHE_SECONDS
from search.descriptions.selectors import descriptions_enabled, latest_descriptions
from search.errors import ApplicationError, NotFound
from search.index.selectors import index_status
from search.languages import PAGE_LANGUAGE_NAMES
from search.ops.health import first_missing_step
from search.queries import services as search_service
from search.queries.models import TEXT_MAX_LENGTH, SearchQuery
from search.queries.retrieval import query_models_loaded
from search.queries.routing import OTHER
from search.queries.selectors import (
    DETECT,
    get_query,
    label_filters,
    results_page,
)
from search.queries.uploads import UploadError, check_upload_size
from search.web.pages import login_or_token_required, show_error
from tinyrag_site.throttling import rate_limited

PERCENT = 100  # the page shows similarity as cosine x 100 (a percentage); services take cosine
CLASS_TEXT_MAX_LENGTH = 200  # what the class box takes: a class name, never a document

# What the query language menu offers: text_search(language=...) values, DETECT for None;
# OTHER reads the text in the detected language among all but English and Indonesian.
QUERY_LANGUAGES = [
    (DETECT, gettext_lazy("Detect automatically")),
    *PAGE_LANGUAGE_NAMES.items(),
    (OTHER, gettext_lazy("Another language")),
]
LANGUAGE_NOT_OFFERED = gettext_lazy("That query language is not offered: pick one from the list.")


def query_language_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        required=False,
        choices=QUERY_LANGUAGES,
        label=gettext_lazy("Query language"),
        error_messages={"invalid_choice": LANGUAGE_NOT_OFFERED},
    )


class SearchForm(forms.Form):
    text = forms.CharField(
        required=False,
        max_length=TEXT_MAX_LENGTH,
        label=gettext_lazy("Search for"),
        widget=forms.TextInput(
            attrs={
                "placeholder": gettext_lazy("Search in any language"),
                "autofocus": True,
                "autocomplete": "off",
                "enterkeyhint": "search",
            }
        ),
    )
    language = query_language_field()
    image = forms.FileField(
        required=False,
        label=gettext_lazy("Image"),
        widget=forms.FileInput(attrs={"accept": "image/*"}),
    )
    top_k = forms.IntegerField()  # bounds from settings, set per form
    class_filter = forms.CharField(
        required=False,
        max_length=CLASS_TEXT_MAX_LENGTH,
        label=gettext_lazy("Class"),
        widget=forms.TextInput(
            attrs={
                "list": "class-options",
                "autocomplete": "off",
                "placeholder": gettext_lazy("All classes"),
            }
        ),
    )
    min_similarity = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=PERCENT,
        label=gettext_lazy("Minimum similarity (%)"),
        widget=forms.NumberInput(attrs={"placeholder": gettext_lazy("none"), "step": 1}),
    )

    def __init__(self, *args, dataset_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["top_k"] = forms.IntegerField(
            label=gettext_lazy("Results"),
            min_value=1,
            max_value=settings.TINYRAG_TOP_K_MAX,
            initial=settings.TINYRAG_TOP_K_DEFAULT,
        )
        self.class_options = class_options(class_choices(dataset_name))

    def clean_image(self):
        # Refused by its size before it is read into memory (as the API does).
        image = self.cleaned_data.get("image")
        if image:
            try:
                check_upload_size(image.size)
            except UploadError as exc:
                raise forms.ValidationError(str(exc)) from None
        return image

    def clean_class_filter(self) -> str:
        """The wnid of the class typed or picked: its name as the list shows it, or a wnid."""
        typed = " ".join(self.cleaned_data.get("class_filter", "").split())
        if not typed:
            return ""
        wnid = self.class_options.wnid_of(typed)
        if wnid is None:
            raise forms.ValidationError(
                _(
                    "There is no class called “%(typed)s”. Pick one from the list, or leave "
                    "the class empty to search all classes."
                )
                % {"typed": typed}
            )
        return wnid

    def clean(self):
        data = super().clean()
        has_text = bool((data.get("text") or "").strip())
        if has_text and data.get("image"):
            raise forms.ValidationError(search_service.TEXT_AND_IMAGE)
        if not has_text and not data.get("image") and not self.has_error("image"):
            raise forms.ValidationError(_("Type a text or choose an image."))
        return data

    def search_arguments(self) -> dict:
        """What the search services take from a valid form (similarity as cosine)."""
        data = self.cleaned_data
        percent = data.get("min_similarity")
        return {
            "top_k": data["top_k"],
            "class_filter": data["class_filter"] or None,
            "min_similarity": None if percent is None else percent / PERCENT,
        }

    def text_language(self) -> str | None:
        """The language the text is to be read in; None: detect it."""
        return self.cleaned_data.get("language") or None


class SearchAgainForm(forms.Form):
    """A query's text again, in another language ("Search again as English")."""

    language = query_language_field()


def _page_context(form: SearchForm | None = None, *, language: str = DETECT, **extra) -> dict:
    """The search page's context; a new form starts with the query language `language`."""
    status = index_status(load=True)
    dataset = status.manifest.dataset if status.manifest else None
    return {
        "form": form or SearchForm(dataset_name=dataset, initial={"language": language}),
        "index": status,
        "setup_step": None if status.manifest else first_missing_step(),
        "models_loaded": query_models_loaded(),
        "text_and_image_rule": search_service.TEXT_AND_IMAGE,
        **extra,
    }


def _result_context(
    request: HttpRequest,
    query: SearchQuery,
    *,
    page: int = 1,
    through: bool = False,
    appended: bool = False,
) -> dict:
    """What the results show: page `page` (pages 1..page with `through`), each result with its
    latest description, and above them the descriptions of images not on the page. A page
    `appended` by "Load more" leaves its cards out: the first page listed them above."""
    shown = results_page(query, number=page, through=through)
    latest = latest_descriptions(user=request.user, query=query)
    for result in shown.results:  # each result's card sits on the result itself
        result.description = None if appended else latest.pop(result.image_id, None)
    label_filters([query])
    return {
        "query": query,
        "page": shown,
        "results": shown.results,
        "filter_class": query.class_filter_name or None,
        "min_similarity_percent": _percent(query.min_similarity),
        "can_describe": descriptions_enabled(),
        "upload_description": latest.pop(None, None),
        "descriptions": list(latest.values()),  # of images not on this page (or the source)
    }


def _percent(cosine) -> int | None:
    return None if cosine is None else round(cosine * PERCENT)


@login_not_required
@require_GET
def search_page(request: HttpRequest) -> HttpResponse:
    """The search page; for a signed-out visitor, the landing page that says what this is."""
    if not request.user.is_authenticated:
        return render(request, "landing.html", {"descriptions_enabled": descriptions_enabled()})
    # ?language=id: a new search keeps the query language the last one was chosen in
    language = request.GET.get("language", DETECT)
    offered = {code for code, _name in QUERY_LANGUAGES}
    return render(
        request,
        "search/page.html",
        _page_context(language=language if language in offered else DETECT),
    )


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
        common = {"user": request.user, **form.search_arguments()}
        image = form.cleaned_data.get("image")
        try:
            if image:
                query = search_service.image_search(data=image.read(), **common)
            else:
                query = search_service.text_search(
                    text=form.cleaned_data["text"], language=form.text_language(), **common
                )
        except ApplicationError as exc:
            if exc.status == HTTPStatus.SERVICE_UNAVAILABLE:
                error = str(exc)  # the operator's to fix: said above the form, with a 503
            else:  # the sender's input: said on the form, with a 400
                form.add_error("image" if isinstance(exc, UploadError) else None, str(exc))
        else:
            if request.htmx:
                context = _result_context(request, query)
                response = render(request, "search/page.html#results", context)
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
        raise Http404(_("No such query in your history.")) from None


def _page_number(request: HttpRequest) -> int:
    """?page=N of the results (anything else: the first page)."""
    value = request.GET.get("page", "")
    # isascii: "²" is a digit to str.isdigit() but not to int()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else 1


@require_GET
def query_detail(request: HttpRequest, pk: int) -> HttpResponse:
    query = own_query(request, pk)
    number = _page_number(request)
    if request.htmx and "page" in request.GET and not request.htmx.history_restore_request:
        # "Load more": only the next page's cards, appended where the button was
        return render(
            request,
            "search/page.html#more",
            _result_context(request, query, page=number, appended=True),
        )
    # without JavaScript the "Load more" link shows every page up to the one asked for
    return render(
        request,
        "search/query.html",
        {
            **_page_context(),
            **_result_context(request, query, page=number, through=True),
        },
    )


@require_POST
@rate_limited("search")
def rerun_query(request: HttpRequest, pk: int) -> HttpResponse:
    """The query again; with `language` (a text query), read in that language ("" detects)."""
    query = own_query(request, pk)
    back = reverse("search:query", args=[pk])
    try:
        if "language" in request.POST and query.kind == SearchQuery.Kind.TEXT:
            form = SearchAgainForm(request.POST)
            if not form.is_valid():
                messages.error(request, LANGUAGE_NOT_OFFERED)
                return redirect(back)
            new = search_service.text_search(
                user=query.user,
                text=query.text,
                language=form.cleaned_data["language"] or None,
                top_k=query.top_k,
                class_filter=query.filters.get("class"),
                min_similarity=query.filters.get("min_similarity"),
            )
        else:
            new = search_service.rerun(query=query)
    except ApplicationError as exc:
        return show_error(request, exc, back=back)
    return _to_query(request, new)


@login_or_token_required
@require_GET
def query_upload(request: HttpRequest, pk: int) -> FileResponse:
    query = own_query(request, pk)
    if not query.uploaded_image:
        raise Http404(_("This query has no uploaded image."))
    content_type = mimetypes.guess_type(query.uploaded_image.name)[0] or "application/octet-stream"
    response = FileResponse(query.uploaded_image.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=IMAGE_CACHE_SECONDS)
    return response
