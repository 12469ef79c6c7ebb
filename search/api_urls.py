"""REST API v1 routes, under /api/v1/ (tinyrag_site/urls.py).

Every view is exempt from LoginRequiredMiddleware: DRF authenticates the request itself (token
or session) and answers 401/403 in the API's error format instead of a redirect to the login
page. Anything else under /api/v1/ is a JSON 404, never Django's HTML page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.urls import path, re_path, register_converter

from search.catalog import api as catalog_api
from search.descriptions import api as descriptions_api
from search.queries import api as queries_api
from search.web import PK_MAX
from search.web.api_errors import not_found


class PrimaryKeyConverter:
    """A positive id that fits the database column; anything else matches no route."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= PK_MAX:
            raise ValueError(value)  # Django takes ValueError as "no match"
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(PrimaryKeyConverter, "id64")

app_name = "api"

urlpatterns = [
    path(
        "search/text", login_not_required(queries_api.TextSearchApi.as_view()), name="search-text"
    ),
    path(
        "search/image",
        login_not_required(queries_api.ImageSearchApi.as_view()),
        name="search-image",
    ),
    path("queries/", login_not_required(queries_api.QueryListApi.as_view()), name="queries"),
    path(
        "queries/<id64:id>", login_not_required(queries_api.QueryDetailApi.as_view()), name="query"
    ),
    path(
        "queries/<id64:id>/rerun",
        login_not_required(queries_api.QueryRerunApi.as_view()),
        name="query-rerun",
    ),
    path(
        "queries/<id64:id>/descriptions",
        login_not_required(descriptions_api.DescriptionCreateApi.as_view()),
        name="query-descriptions",
    ),
    path(
        "descriptions/<id64:id>",
        login_not_required(descriptions_api.DescriptionDetailApi.as_view()),
        name="description",
    ),
    path(
        "images/<id64:id>", login_not_required(catalog_api.ImageDetailApi.as_view()), name="image"
    ),
    path("classes/", login_not_required(catalog_api.ClassListApi.as_view()), name="classes"),
    re_path(r"", login_not_required(not_found), name="not-found"),
]
