"""History pages: ownership, search and filters, paging, bounds, deleting behind a confirm step;
the account page's API token."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from search.catalog.models import Dataset, Image, ImageClass
from search.queries.models import SearchQuery
from tests.search.test_views import png_of, search, upload

pytestmark = pytest.mark.django_db

HISTORY = "/history/"


def make(user, text="", kind="text", **fields) -> SearchQuery:
    """A query row made by hand (no index needed): what the history shows of it is known."""
    return SearchQuery.objects.create(
        user=user,
        kind=kind,
        text=text,
        top_k=5,
        encoder="clip",
        index_name="tiny",
        duration_ms=1.0,
        **fields,
    )


@pytest.fixture
def classes() -> dict[str, ImageClass]:
    dataset = Dataset.objects.create(name="pets", root="/nowhere", source="imagefolder")
    return {
        wnid: ImageClass.objects.create(dataset=dataset, wnid=wnid, name=name, names=[name])
        for wnid, name in [("n1cat", "tabby cat"), ("n2reel", "Fishing reel"), ("n3ant", "ant")]
    }


def rows(html: str) -> list[int]:
    """The query ids of the history rows, in page order."""
    return [int(pk) for pk in re.findall(r'<tr id="query-(\d+)">', html)]


def page(client, **params) -> str:
    response = client.get(HISTORY, params)
    assert response.status_code == 200
    return response.content.decode()


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
    assert rows(response.content.decode()) == [SearchQuery.objects.get(text="x").pk, second.pk]
    assert not first_path.exists()
    assert second_path.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        auth_client.post(reverse("search:history-delete"))
    assert SearchQuery.objects.filter(user=user).count() == 0
    assert not second_path.exists()


def test_history_is_paginated(auth_client, user, search_index):
    SearchQuery.objects.bulk_create(
        [
            SearchQuery(
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
    assert partial.lstrip().startswith('<div id="history"')
    assert partial.count('<tr id="query-') == 5


def test_profile_shows_and_regenerates_the_token(auth_client, user):
    from rest_framework.authtoken.models import Token

    html = auth_client.get(reverse("profile")).content.decode()
    old = Token.objects.get(user=user).key
    assert old in html
    auth_client.post(reverse("profile"))
    assert Token.objects.get(user=user).key != old


# --- search and filters ------------------------------------------------------------------


def test_search_text_is_contained_case_insensitively(auth_client, user):
    lemon = make(user, "Red lemon tree")
    lemonade = make(user, "a glass of lemonade")
    make(user, "school bus")
    assert rows(page(auth_client, q="LEMON")) == [lemonade.pk, lemon.pk]
    assert rows(page(auth_client, q="  glass   of ")) == [lemonade.pk]  # spaces as typed


def test_filter_by_kind(auth_client, user):
    text = make(user, "lemon")
    mine = make(user, kind="image")
    similar = make(user, kind="similar")
    assert rows(page(auth_client, kind="image")) == [mine.pk]
    assert rows(page(auth_client, kind="similar")) == [similar.pk]
    assert rows(page(auth_client, kind="text")) == [text.pk]


def test_filter_by_class_filter_and_its_name_not_its_wnid(auth_client, user, classes):
    cat = make(user, "kitten", filters={"class": "n1cat"})
    reel = make(user, "spinning", filters={"class": "n2reel"})
    make(user, "nothing chosen")
    html = page(auth_client)
    assert '<span class="badge class-badge">Class: tabby cat</span>' in html
    assert '<span class="badge class-badge">Class: Fishing reel</span>' in html
    assert "n1cat</" not in html
    assert "Class: n1cat" not in html
    # the filter offers the classes this user used, sorted as people read (not "F" < "t")
    options = re.findall(r'<option value="(n\d\w+)">([^<]+)</option>', html)
    assert options == [("n2reel", "Fishing reel"), ("n1cat", "tabby cat")]
    assert rows(page(auth_client, class_filter="n1cat")) == [cat.pk]
    assert rows(page(auth_client, class_filter="*")) == [reel.pk, cat.pk]
    assert rows(page(auth_client, class_filter="n2reel", q="spin", kind="text")) == [reel.pk]
    assert rows(page(auth_client, class_filter="n2reel", q="kitten")) == []


def test_class_names_are_read_in_one_query_whatever_the_page_holds(auth_client, user, classes):
    def queries_for_history() -> int:
        with CaptureQueriesContext(connection) as captured:
            page(auth_client)
        return len(captured)

    make(user, "one", filters={"class": "n1cat"})
    one = queries_for_history()
    for i, wnid in enumerate(["n2reel", "n3ant", "n1cat", "n2reel", "n3ant"] * 3):
        make(user, f"more {i}", filters={"class": wnid})
    assert queries_for_history() == one


def test_a_stored_minimum_similarity_is_shown(auth_client, user):
    make(user, "strict", filters={"min_similarity": 0.3})
    make(user, "loose")
    html = page(auth_client)
    assert html.count("At least 30% similar") == 1


def test_no_match_says_so_and_offers_all_history(auth_client, user):
    make(user, "lemon")
    html = page(auth_client, q="zebra")
    assert "None of your searches match these filters." in html
    assert "Delete all history…" in html  # there is still history to delete


def test_an_htmx_history_restore_of_a_filtered_address_gets_the_whole_page(auth_client, user):
    # the filters push /history/?q=... into the browser's history; back there, on a miss of
    # HTMX's cache, the page is asked for again with these headers and must come whole
    lemon = make(user, "lemon")
    make(user, "school bus")
    html = auth_client.get(
        HISTORY, {"q": "lemon"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    ).content.decode()
    assert "<html" in html
    assert 'id="history-filter"' in html
    assert rows(html) == [lemon.pk]


def test_paging_keeps_the_filters(auth_client, user):
    for i in range(23):
        make(user, f"lemon {i}")
    make(user, "school bus")
    html = page(auth_client, q="lemon", kind="text")
    assert "23 searches match." in html
    assert "Page 1 of 2" in html
    assert 'href="?q=lemon&amp;kind=text&amp;page=2"' in html
    second = page(auth_client, q="lemon", kind="text", page=2)
    assert len(rows(second)) == 3
    assert 'href="?q=lemon&amp;kind=text&amp;page=1"' in second


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "x" * 101}, "The search text can be at most 100 characters long"),
        ({"kind": "video"}, "That kind of search does not exist"),
        ({"class_filter": "n9nothing"}, "None of your searches used that class filter"),
    ],
)
def test_a_bad_filter_is_left_out_with_a_message(auth_client, user, params, message):
    first, second = make(user, "lemon"), make(user, "bus")
    html = page(auth_client, **params)
    assert message in html
    assert rows(html) == [second.pk, first.pk]  # narrowed by nothing


@pytest.mark.parametrize("number", ["abc", "-1", "0", "999999999", "9" * 5000, ""])
def test_any_page_number_gives_a_page(auth_client, user, number):
    for i in range(21):
        make(user, f"q{i}")
    html = page(auth_client, page=number)
    assert re.search(r"Page [12] of 2", html)
    assert len(rows(html)) in (20, 1)


def test_another_users_class_filters_are_not_offered(auth_client, user, other_user, classes):
    make(other_user, "theirs", filters={"class": "n3ant"})
    make(user, "mine", filters={"class": "n1cat"})
    html = page(auth_client)
    assert '<option value="n3ant">' not in html
    assert "n9nothing" not in html
    assert "None of your searches used" in page(auth_client, class_filter="n3ant")


# --- confirm steps -----------------------------------------------------------------------


def test_delete_all_asks_first_and_its_get_changes_nothing(
    auth_client, user, other_user, search_index
):
    data = png_of(search_index / Image.objects.first().path)
    search(auth_client, image=upload(data))
    search(auth_client, text="lemon")
    search(auth_client, text="bus")
    make(other_user, "theirs")
    response = auth_client.get(reverse("search:history-delete"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1" in html
    assert "Delete all your history?" in html
    assert (
        "3 searches will be deleted, with their results and descriptions, and the 1 image" in html
    )
    assert f'<form method="post" action="{reverse("search:history-delete")}"' in html
    assert f'href="{HISTORY}" class="button secondary" data-confirm-cancel>Cancel' in html
    assert SearchQuery.objects.filter(user=user).count() == 3  # the GET deleted nothing
    # "Cancel" is the history page, which still holds them all
    assert len(rows(page(auth_client))) == 3


def test_delete_all_in_place_with_htmx_is_the_panel_alone(auth_client, user):
    make(user, "lemon")
    html = auth_client.get(reverse("search:history-delete"), HTTP_HX_REQUEST="true").content
    html = html.decode()
    assert html.lstrip().startswith('<section class="card confirm-panel"')
    assert "<h2" in html
    assert "<html" not in html
    assert "1 search will be deleted, with its results and descriptions." in html
    assert SearchQuery.objects.filter(user=user).count() == 1


def test_delete_all_of_an_empty_history_has_nothing_to_confirm(auth_client, user):
    html = auth_client.get(reverse("search:history-delete")).content.decode()
    assert "Your history is already empty" in html
    assert 'action="/history/delete/"' not in html


def test_delete_all_says_how_many_went(auth_client, user, other_user):
    make(user, "a")
    make(user, "b")
    theirs = make(other_user, "c")
    response = auth_client.post(reverse("search:history-delete"), follow=True)
    assert "Your history was deleted: 2 searches." in response.content.decode()
    assert list(SearchQuery.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_delete_one_asks_first_on_a_page_of_its_own(auth_client, user, classes):
    query = make(user, "lemon", filters={"class": "n1cat"})
    url = reverse("search:query-delete", args=[query.pk])
    html = auth_client.get(url, {"next": "/history/?q=lem"}).content.decode()
    assert "Delete this search?" in html
    assert "“lemon”" in html
    assert "Class: tabby cat" in html
    assert '<input type="hidden" name="next" value="/history/?q=lem">' in html
    assert 'href="/history/?q=lem" class="button secondary" data-confirm-cancel>Cancel' in html
    assert SearchQuery.objects.filter(pk=query.pk).exists()  # the GET deleted nothing
    response = auth_client.post(url, {"next": "/history/?q=lem"})
    assert response.status_code == 302
    assert response["Location"] == "/history/?q=lem"
    assert not SearchQuery.objects.filter(pk=query.pk).exists()


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/history/", "//evil.example/history/", "/admin/", "x" * 3000]
)
def test_a_delete_returns_only_to_the_history(auth_client, user, next_url):
    query = make(user, "lemon")
    response = auth_client.post(reverse("search:query-delete", args=[query.pk]), {"next": next_url})
    assert response["Location"] == HISTORY


def test_history_rows_link_to_the_confirm_page_and_keep_the_filters(auth_client, user):
    query = make(user, "lemon")
    html = page(auth_client, q="lem")
    confirm = reverse("search:query-delete", args=[query.pk])
    assert f'href="{confirm}?next=/history/%3Fq%3Dlem"' in html


def test_a_delete_with_htmx_returns_the_filtered_page_without_it(auth_client, user):
    keep = [make(user, f"lemon {i}") for i in range(21)]
    make(user, "bus")
    gone = keep.pop(0)
    response = auth_client.post(
        reverse("search:query-delete", args=[gone.pk]),
        {"next": "/history/?q=lemon"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert rows(html) == [q.pk for q in reversed(keep)]  # all 20 lemons left, on one page
    assert "20 searches match." in html
    assert 'hx-swap-oob="true"><li class="success">The search was deleted.</li>' in html


def test_another_users_query_cannot_be_confirmed_or_deleted(auth_client, user, other_user):
    theirs = make(other_user, "private")
    url = reverse("search:query-delete", args=[theirs.pk])
    assert auth_client.get(url).status_code == 404
    assert auth_client.post(url).status_code == 404
    assert auth_client.post(url, HTTP_HX_REQUEST="true").status_code == 404
    assert SearchQuery.objects.filter(pk=theirs.pk).exists()


def test_other_methods_are_refused(auth_client, user):
    query = make(user, "lemon")
    assert auth_client.put(reverse("search:query-delete", args=[query.pk])).status_code == 405
    assert auth_client.delete(reverse("search:history-delete")).status_code == 405
    assert auth_client.post(HISTORY).status_code == 405
    assert SearchQuery.objects.filter(pk=query.pk).exists()


def test_state_changes_need_the_csrf_token(user):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    query = make(user, "lemon")
    assert browser.post(reverse("search:query-delete", args=[query.pk])).status_code == 403
    assert browser.post(reverse("search:history-delete")).status_code == 403
    assert SearchQuery.objects.filter(pk=query.pk).exists()


def test_from_its_own_page_cancel_goes_back_there_and_delete_to_the_history(auth_client, user):
    query = make(user, "lemon")
    own_page = reverse("search:query", args=[query.pk])
    url = reverse("search:query-delete", args=[query.pk])
    html = auth_client.get(url, {"next": own_page}).content.decode()
    assert f'href="{own_page}" class="button secondary" data-confirm-cancel>Cancel' in html
    response = auth_client.post(url, {"next": own_page})
    assert response["Location"] == HISTORY  # the query's page went with it
