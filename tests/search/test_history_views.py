"""History pages: ownership, paging, deleting; the account page's API token."""

from __future__ import annotations

import pytest
from django.urls import reverse

from search.catalog.models import Image
from search.queries.models import SearchQuery
from tests.search.test_views import png_of, search, upload

pytestmark = pytest.mark.django_db


def test_history_lists_only_own_queries_newest_first(client, user, other_user, search_index):
    client.force_login(other_user)
    search(client, text="not yours")
    client.force_login(user)
    search(client, text="first")
    search(client, text="second")
    html = client.get(reverse("search:history")).content.decode()
    assert "not yours" not in html
    assert html.index("“second”") < html.index("“first”")


def test_delete_one_and_all_removes_uploads_too(
    auth_client, user, search_index, clip_settings, django_capture_on_commit_callbacks
):
    data = png_of(search_index / Image.objects.first().path)
    search(auth_client, image=upload(data))
    search(auth_client, image=upload(data))
    search(auth_client, text="x")
    first, second = SearchQuery.objects.filter(kind="image").order_by("pk")
    first_path, second_path = (
        clip_settings.MEDIA_ROOT / q.uploaded_image.name for q in (first, second)
    )
    assert first_path.is_file()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the delete commits
        response = auth_client.post(
            reverse("search:query-delete", args=[first.pk]), HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    assert response.content == b""
    assert not first_path.exists()
    assert second_path.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        auth_client.post(reverse("search:history-delete"))
    assert SearchQuery.objects.filter(user=user).count() == 0
    assert not second_path.exists()


def test_history_is_paginated(auth_client, user, search_index):
    from search.queries.models import SearchQuery as Q

    Q.objects.bulk_create(
        [
            Q(
                user=user,
                kind="text",
                text=f"q{i}",
                top_k=1,
                encoder="e",
                index_name="tiny",
                duration_ms=1.0,
            )
            for i in range(25)
        ]
    )
    first = auth_client.get(reverse("search:history")).content.decode()
    assert "Page 1 of 2" in first
    partial = auth_client.get(
        reverse("search:history"), {"page": 2}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert partial.lstrip().startswith('<div id="history">')
    assert partial.count('<tr id="query-') == 5


def test_profile_shows_and_regenerates_the_token(auth_client, user):
    from rest_framework.authtoken.models import Token

    html = auth_client.get(reverse("profile")).content.decode()
    old = Token.objects.get(user=user).key
    assert old in html
    auth_client.post(reverse("profile"))
    assert Token.objects.get(user=user).key != old
