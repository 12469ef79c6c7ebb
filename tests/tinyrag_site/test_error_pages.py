"""403, 404 and 500 are pages of the site: its layout and navigation, plain words, a way on."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from search.queries import views as query_views

pytestmark = pytest.mark.django_db


def test_an_unknown_address_is_the_branded_404_without_resolver_internals(auth_client, user):
    response = auth_client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "This page is not here" in page
    assert f"Signed in as <strong>{user.username}</strong>" in page  # the site's own layout
    assert 'href="#main"' in page  # with its skip link
    assert "Resolver404" not in page
    assert "tried" not in page


def test_a_404_raised_by_a_view_repeats_what_it_said(auth_client):
    response = auth_client.get(reverse("search:query", args=[987654]))
    assert response.status_code == 404
    assert "No such query in your history." in response.content.decode()


def test_a_signed_out_visitor_gets_the_404_with_log_in_links(client):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "This page is not here" in page
    assert f'href="{reverse("login")}"' in page


def test_a_forbidden_action_is_the_branded_403(auth_client):
    response = auth_client.post(reverse("evaluation:list"), {})  # only staff start runs
    assert response.status_code == 403
    page = response.content.decode()
    assert "You cannot open this page" in page
    assert "Signed in as" in page


def test_an_expired_form_is_the_branded_csrf_page_and_changes_nothing(user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(reverse("logout"))
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()
    assert f"Signed in as <strong>{user.username}</strong>" in response.content.decode()
    assert browser.get(reverse("search:history")).status_code == 200  # still signed in


def test_a_crash_is_the_branded_500(auth_client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(query_views, "_page_context", broken)
    auth_client.raise_request_exception = False
    response = auth_client.get(reverse("search:home"))
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    assert "a bug" not in page  # nothing of the failure itself reaches the visitor
    assert f'href="{reverse("search:home")}"' in page
