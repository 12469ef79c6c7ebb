"""Pages of the search app. Thin: they call selectors and services, then render."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from search.selectors import dataset_overview, index_status


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request, "search/home.html", {"datasets": dataset_overview(), "index": index_status()}
    )
