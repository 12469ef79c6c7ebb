"""Description pages: request one, watch it being written (HTMX polling), regenerate."""

from __future__ import annotations

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from search.descriptions import services as describe_service
from search.descriptions.models import Description
from search.descriptions.selectors import get_description
from search.errors import ApplicationError
from search.languages import page_language
from search.queries.models import SearchQuery
from search.queries.views import own_query
from search.web import PK_MAX
from search.web.pages import error_text, show_error
from tinyrag_site.throttling import rate_limited


class DescribeForm(forms.Form):
    """What a Describe button sends: a result's id (none: the query's upload), the context."""

    image_id = forms.IntegerField(required=False, min_value=1, max_value=PK_MAX)
    context = forms.ChoiceField(choices=Description.Context.choices, required=False)

    def clean_context(self) -> str:
        return self.cleaned_data["context"] or Description.Context.RETRIEVED

    def error_line(self) -> str:
        return " ".join(f"{name}: {' '.join(errors)}" for name, errors in self.errors.items())


def _own_description(request: HttpRequest, pk: int) -> Description:
    try:
        description = get_description(user=request.user, description_id=pk)
    except Description.DoesNotExist:
        raise Http404(_("No such description in your history.")) from None
    return describe_service.with_stall_check(description)


def _describe(request: HttpRequest, *, query: SearchQuery, back: str, **request_args):
    """Request a description; an error goes back to the page as a message (or HTMX card)."""
    try:
        description = describe_service.request_description(query=query, **request_args)
    except ApplicationError as exc:
        if request.htmx:
            context = {"error": error_text(request, exc)}
            return render(request, "search/description.html#card", context)
        return show_error(request, exc, back=back)
    if request.htmx:
        return render(request, "search/description.html#card", {"description": description})
    return redirect("search:description", pk=description.pk)


@require_POST
@rate_limited("describe")
def describe(request: HttpRequest, pk: int) -> HttpResponse:
    query = own_query(request, pk)
    form = DescribeForm(request.POST)
    if not form.is_valid():  # the buttons never send this: a 400 page (or card) that says why
        context = {
            "error": _(
                "This request to describe an image could not be read. Go back to the "
                "results and press Describe on the image you want described."
            ),
            "error_detail": form.error_line(),
            "back": reverse("search:query", args=[pk]),
        }
        if request.htmx:  # swapped in where the card would go (HTMX swaps no 4xx)
            return render(request, "search/description.html#card", context)
        return render(request, "search/description.html", context, status=400)
    return _describe(
        request,
        query=query,
        back=reverse("search:query", args=[pk]),
        image_id=form.cleaned_data["image_id"],
        context_mode=form.cleaned_data["context"],
        language=page_language(),  # the page's: a description is written for its reader
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
        language=old.language,  # the same description anew, in the language it was written in
        regenerate=True,
    )
