"""Security sweeps: every URL needs login except the public ones; CSRF on session POSTs."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

pytestmark = pytest.mark.django_db

PUBLIC = {
    "/",  # signed out, the landing page (tests/tinyrag_site/test_accounts.py)
    "/healthz",
    "/readyz",
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/logout/",
    "/api/schema/",
    "/api/docs/",
    "/i18n/setlang/",  # the language switcher, for visitors too (tests/tinyrag_site/test_i18n.py)
}
PUBLIC_PREFIXES = ("/admin/", "/static/")  # the admin has its own login; static is public


def concrete_urls(patterns=None, prefix=""):
    """Every route of the URLconf, with 1 for each path parameter."""
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(p.pattern)
        route = re.sub(r"<(?:\w+:)?\w+>", "1", route).lstrip("^").rstrip("$").replace("\\Z", "")
        if isinstance(p, URLResolver):
            yield from concrete_urls(p.url_patterns, prefix + route)
        elif isinstance(p, URLPattern) and isinstance(p.pattern, RoutePattern):
            yield "/" + prefix + route  # (regex catch-alls, e.g. the API's JSON 404, skipped)


def test_every_private_url_requires_login():
    urls = sorted(set(concrete_urls()))
    assert "/history/1/" in urls  # the sweep really walks the app's routes
    checked = []
    for url in urls:
        if url in PUBLIC or url.startswith(PUBLIC_PREFIXES):
            continue
        for method in ("get", "post"):
            response = getattr(Client(), method)(url)
            if url.startswith("/api/"):
                assert response.status_code in {401, 403, 405}, (method, url)
                if response.status_code != 405:
                    assert "error" in response.json(), (method, url)
            else:
                assert response.status_code in {302, 405}, (method, url, response.status_code)
                if response.status_code == 302:
                    assert response["Location"].startswith("/accounts/login/"), (method, url)
            checked.append((method, url))
    assert len(checked) > 20


def test_session_posts_need_the_csrf_token(user, password):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    for url in ("/search/", "/history/delete/", "/accounts/profile/", "/accounts/logout/"):
        assert client.post(url, {"text": "cat"}).status_code == 403, url
        assert client.post(url, {"text": "cat"}, HTTP_HX_REQUEST="true").status_code == 403, url
