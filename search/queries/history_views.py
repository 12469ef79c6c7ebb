"""History pages: the signed-in user's past queries, and deleting them."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from search.queries import services as search_service
from search.queries.selectors import query_history
from search.queries.views import own_query


@require_POST
def delete_query(request: HttpRequest, pk: int) -> HttpResponse:
    search_service.delete_query(query=own_query(request, pk))
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
