"""History pages: the signed-in user's past queries (searched, filtered, paged), and deleting
them, one or all, each behind a confirm step (a page without JavaScript, in place with it)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_http_methods

from search.queries import services as search_service
from search.queries.models import SearchQuery
from search.queries.selectors import (
    ANY_CLASS,
    HISTORY_TEXT_MAX_LENGTH,
    HistoryFilter,
    history_size,
    label_filters,
    query_history,
    used_class_filters,
)
from search.queries.views import own_query

PAGE_SIZE = 20
NEXT_MAX_LENGTH = 2000  # characters of the `next` address a delete returns to


class HistoryFilterForm(forms.Form):
    """The history's search box and filters, read from GET: a bad value is dropped and said,
    never an error page."""

    q = forms.CharField(
        label=gettext_lazy("Search your queries"),
        required=False,
        max_length=HISTORY_TEXT_MAX_LENGTH,
        error_messages={
            "max_length": gettext_lazy(
                "The search text can be at most %(limit_value)d characters long; it was left out."
            )
        },
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": gettext_lazy("Words in your text searches")}
        ),
    )
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        required=False,
        choices=[
            ("", gettext_lazy("All kinds")),
            (SearchQuery.Kind.TEXT, gettext_lazy("Text")),
            (SearchQuery.Kind.IMAGE, gettext_lazy("Uploaded image")),
            (SearchQuery.Kind.SIMILAR, gettext_lazy("More like this")),
        ],
        error_messages={
            "invalid_choice": gettext_lazy("That kind of search does not exist; it was left out.")
        },
    )
    class_filter = forms.ChoiceField(
        label=gettext_lazy("Class filter"),
        required=False,
        error_messages={
            "invalid_choice": gettext_lazy(
                "None of your searches used that class filter; it was left out."
            )
        },
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["class_filter"].choices = [
            ("", _("Any or none")),
            (ANY_CLASS, _("Any class filter")),
            *used_class_filters(user=user),
        ]

    def history_filter(self) -> HistoryFilter:
        """The filters that are valid; an invalid one narrows nothing (its error is shown)."""
        self.is_valid()
        data = self.cleaned_data
        return HistoryFilter(
            text=" ".join((data.get("q") or "").split()),
            kind=data.get("kind") or "",
            class_filter=data.get("class_filter") or "",
        )


def _history_context(request: HttpRequest, params: QueryDict) -> dict:
    form = HistoryFilterForm(params, user=request.user)
    where = form.history_filter()
    page = Paginator(query_history(user=request.user, where=where), PAGE_SIZE).get_page(
        params.get("page")
    )
    label_filters(page.object_list)
    return {
        "form": form,
        "where": where,
        "page": page,
        "params": params,
        "here": _history_url(params),
        # "delete all" is offered while there is anything to delete, matching or not
        "has_history": bool(page.object_list)
        or (where.active and query_history(user=request.user).exists()),
    }


def _history_url(params: QueryDict) -> str:
    query = params.urlencode()
    return reverse("search:history") + (f"?{query}" if query else "")


def _next_url(request: HttpRequest) -> str:
    """Where a confirm step goes back to: the history page (with its filters) or the query's
    page it came from; anything else is the history."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if (
        candidate
        and len(candidate) <= NEXT_MAX_LENGTH
        and candidate.startswith(reverse("search:history"))
        and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()})
    ):
        return candidate
    return reverse("search:history")


def _history_params(url: str) -> QueryDict:
    """The filters and page of a history address (what `next` names)."""
    return QueryDict(urlsplit(url).query)


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    context = _history_context(request, request.GET)
    # a filtered address is pushed to the browser's history: restoring it wants the whole page
    rows = request.htmx and not request.htmx.history_restore_request
    template = "search/history.html#rows" if rows else "search/history.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
def delete_query(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirm page (changes nothing). POST: the query goes, with its results, its
    descriptions and its upload; with HTMX the history list comes back without it."""
    query = own_query(request, pk)
    back = _next_url(request)
    if request.method == "GET":
        label_filters([query])
        return render(
            request,
            "search/confirm.html",
            {"confirm": "query", "query": query, "back": back, "title": _("Delete this search?")},
        )
    search_service.delete_query(query=query)
    if back.startswith(reverse("search:query", args=[pk])):  # its own page is gone with it
        back = reverse("search:history")
    if request.htmx:
        context = _history_context(request, _history_params(back))
        context["deleted_message"] = _("The search was deleted.")
        return render(request, "search/history.html#rows", context)
    messages.success(request, _("The search was deleted."))
    return redirect(back)


@require_http_methods(["GET", "POST"])
def delete_history(request: HttpRequest) -> HttpResponse:
    """GET: the confirm page, saying what would go (changes nothing); in place with HTMX.
    POST: every query of the user goes."""
    if request.method == "GET":
        size = history_size(user=request.user)
        context = {
            "confirm": "history",
            "size": size,
            "back": reverse("search:history"),
            "title": _("Delete all your history?"),
        }
        template = "search/confirm.html#panel" if request.htmx else "search/confirm.html"
        return render(request, template, context)
    count = search_service.delete_history(user=request.user)
    messages.success(
        request,
        ngettext(
            "Your history was deleted: %(count)d search.",
            "Your history was deleted: %(count)d searches.",
            count,
        )
        % {"count": count},
    )
    return redirect("search:history")
