"""Times in the viewer's time zone: the Account page's choice, else the browser's (the `tz`
cookie), else the server's; a malformed or unknown name falls back, never an error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from search.queries.models import SearchQuery
from tinyrag_site import timezones

pytestmark = pytest.mark.django_db

# 2024-03-01 10:05 UTC is 17:05 in Jakarta (UTC+7, no daylight saving) and 05:05 in New York
# (UTC-5 in March before the 10th).
SEARCHED_AT = datetime(2024, 3, 1, 10, 5, tzinfo=UTC)


@pytest.fixture
def searched(user) -> SearchQuery:
    query = SearchQuery.objects.create(
        user=user, kind="text", text="lemon", top_k=5, encoder="e", index_name="t", duration_ms=1
    )
    SearchQuery.objects.filter(pk=query.pk).update(created_at=SEARCHED_AT)  # auto_now_add
    return query


def history(client) -> str:
    response = client.get(reverse("search:history"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_browsers_zone_from_its_cookie(auth_client, searched):
    auth_client.cookies["tz"] = "Asia/Jakarta"
    html = history(auth_client)
    assert ">1 Mar 2024, 17:05</time>" in html
    assert 'datetime="2024-03-01T17:05:00+07:00"' in html
    assert "Times in Asia/Jakarta (your browser's time zone)." in html


def test_without_a_cookie_times_are_the_servers(auth_client, searched, settings):
    assert settings.TIME_ZONE == "UTC"
    html = history(auth_client)
    assert ">1 Mar 2024, 10:05</time>" in html
    assert "Times in UTC." in html


@pytest.mark.parametrize(
    "cookie", ["Not/AZone", "../../../etc/passwd", "Asia/Jakarta;", "x" * 200, "", "/UTC"]
)
def test_a_malformed_or_unknown_zone_falls_back_to_the_servers(auth_client, searched, cookie):
    auth_client.cookies["tz"] = cookie
    html = history(auth_client)
    assert ">1 Mar 2024, 10:05</time>" in html
    assert "Times in UTC." in html


def test_the_accounts_choice_wins_over_the_browser(auth_client, searched):
    auth_client.cookies["tz"] = "Asia/Jakarta"
    auth_client.cookies["tz_choice"] = "America/New_York"
    html = history(auth_client)
    assert ">1 Mar 2024, 05:05</time>" in html
    assert "Times in America/New_York (chosen on your account)." in html


def test_a_bad_choice_cookie_falls_back_to_the_browser(auth_client, searched):
    auth_client.cookies["tz"] = "Asia/Jakarta"
    auth_client.cookies["tz_choice"] = "Mars/Olympus_Mons"
    assert ">1 Mar 2024, 17:05</time>" in history(auth_client)


def test_choosing_a_zone_on_the_account_page_keeps_it(auth_client, searched):
    response = auth_client.post(reverse("profile"), {"time_zone": "Asia/Jakarta"})
    assert response.status_code == 302
    assert response["Location"] == reverse("profile") + "#time-zone"
    cookie = response.cookies["tz_choice"]
    assert cookie.value == "Asia/Jakarta"
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    auth_client.cookies["tz"] = "America/New_York"  # the browser says otherwise
    assert ">1 Mar 2024, 17:05</time>" in history(auth_client)
    page = auth_client.get(reverse("profile")).content.decode()
    assert '<option value="Asia/Jakarta" selected>Asia/Jakarta</option>' in page
    assert "the time zone you chose" in page


def test_clearing_the_choice_follows_the_browser_again(auth_client, searched):
    auth_client.cookies["tz_choice"] = "Asia/Jakarta"
    response = auth_client.post(reverse("profile"), {"time_zone": ""})
    assert response.cookies["tz_choice"].value == ""
    assert response.cookies["tz_choice"]["max-age"] == 0
    assert "Times in UTC." in history(auth_client)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "US/Eastern", "../etc/passwd", "x" * 5000])
def test_a_zone_not_in_the_list_is_refused_with_a_message(auth_client, user, name):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user).key
    response = auth_client.post(reverse("profile"), {"time_zone": name}, follow=True)
    assert "Choose a time zone from the list." in response.content.decode()
    assert "tz_choice" not in auth_client.cookies or not auth_client.cookies["tz_choice"].value
    assert Token.objects.get(user=user).key == token  # a time zone post is not a token post


def test_the_choices_are_area_city_names_and_utc():
    choices = timezones.zone_choices()
    assert choices[0] == "UTC"
    assert "Asia/Jakarta" in choices
    assert "America/Argentina/Buenos_Aires" in choices
    assert not any(c.startswith(("Etc/", "US/", "posix")) for c in choices)
    assert list(choices[1:]) == sorted(choices[1:])
    assert all(timezones.zone_from(c) is not None for c in choices)
