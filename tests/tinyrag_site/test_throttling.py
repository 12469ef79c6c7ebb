"""The shared counters under the login throttle and the rate limits, and the page limits.

Across processes (two gunicorn workers, Redis): tests/tinyrag_site/test_shared_limits.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache, caches
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from tinyrag_site.settings import cache_from_url
from tinyrag_site.throttling import Rate, count, count_all, uncount

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_state")]


@pytest.mark.parametrize(
    ("text", "rate"),
    [("120/minute", Rate(120, 60)), ("5/s", Rate(5, 1)), ("3/hour", Rate(3, 3600)),
     ("10/day", Rate(10, 86400)), (" 7 / m ", Rate(7, 60))],
)  # fmt: skip
def test_rates_parse(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["120", "x/minute", "5/fortnight", ""])
def test_bad_rates_are_refused_with_the_format(text):
    with pytest.raises(ImproperlyConfigured, match="N/minute"):
        Rate.parse(text)


def test_a_rate_of_nothing_is_refused():
    with pytest.raises(ImproperlyConfigured, match="at least 1 request"):
        Rate.parse("0/minute")


def test_cache_urls():
    assert cache_from_url("redis://redis:6379/0") == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://redis:6379/0",
    }
    assert cache_from_url("db://tinyrag_cache") == {
        "BACKEND": "tinyrag_site.cache.DatabaseCache",
        "LOCATION": "tinyrag_cache",
    }
    with pytest.raises(ImproperlyConfigured, match="TINYRAG_CACHE_URL"):
        cache_from_url("memcached://127.0.0.1:11211")


def test_the_default_cache_is_the_database():
    from tinyrag_site.cache import DatabaseCache

    assert isinstance(caches["default"], DatabaseCache)
    assert caches["default"]._max_entries == 1_000_000  # strangers cannot cull others


def test_counts_go_up_within_a_window_and_name_its_end():
    first, second = count("test:thing", 3600), count("test:thing", 3600)
    assert (first.count, second.count) == (1, 2)
    assert 0 < second.retry_after <= 3600
    assert count("test:other", 3600).count == 1  # names do not share counts


def test_count_all_counts_each_name_in_one_transaction_with_the_counters_of_count():
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        windows = count_all([("test:a", 60), ("test:b", 3600), ("test:a", 60)])
    assert [w.count for w in windows] == [1, 1, 2]  # a name given twice counts twice
    # the test runs in a transaction: the count's own transaction is one savepoint
    opened = [q for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(opened) == 1
    assert [w.count for w in count_all([("test:b", 3600), ("test:a", 60)])] == [2, 3]
    assert count("test:a", 60).count == 4  # the same counters as count()
    uncount("test:a", 60)
    assert count_all([("test:a", 60)])[0].count == 4
    assert 0 < windows[0].retry_after <= 60
    assert 0 < windows[1].retry_after <= 3600


def test_count_all_starts_an_expired_counter_again_with_a_new_expiry():
    count_all([("test:a", 3600), ("test:a", 3600)])
    with connection.cursor() as cursor:  # its hour passes (the window's key is unchanged)
        cursor.execute(
            "UPDATE tinyrag_cache SET expires = %s", [timezone.now() - timedelta(seconds=1)]
        )
    assert [w.count for w in count_all([("test:a", 3600)])] == [1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM tinyrag_cache")
        (raw,) = cursor.fetchone()
    assert cache._expires(raw, connection) > timezone.now()


def expiry(key: str):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT expires FROM tinyrag_cache WHERE cache_key = %s", [cache.make_key(key)]
        )
        return cache._expires(cursor.fetchone()[0], connection)


def test_incr_keeps_the_entry_expiry():
    """Django's own DatabaseCache.incr() is a get and a set(): the set gives the entry the
    default timeout (300 s), so a counter meant to last an hour would vanish in five minutes."""
    cache.add("counter", 0, 3600)
    before = expiry("counter")
    assert [cache.incr("counter") for _ in range(3)] == [1, 2, 3]
    assert cache.get("counter") == 3
    assert expiry("counter") == before
    assert before - timezone.now() > timedelta(seconds=3500)


def test_incr_of_a_missing_or_expired_entry_is_a_value_error():
    with pytest.raises(ValueError, match="not found"):
        cache.incr("never-set")
    cache.add("short", 5, 3600)
    with connection.cursor() as cursor:  # its hour passes
        cursor.execute(
            "UPDATE tinyrag_cache SET expires = %s WHERE cache_key = %s",
            [timezone.now() - timedelta(seconds=1), cache.make_key("short")],
        )
    with pytest.raises(ValueError, match="not found"):
        cache.incr("short")


def test_decr_takes_back():
    cache.add("counter", 0, 60)
    cache.incr("counter", 5)
    assert cache.decr("counter") == 4


# --- the pages ----------------------------------------------------------------------------


def test_page_searches_over_the_rate_get_a_429_page(auth_client, settings):
    settings.TINYRAG_SEARCH_RATE = "2/day"
    url = reverse("search:run")
    for _ in range(2):  # counted even when the search itself cannot run (no index here)
        assert auth_client.post(url, {"text": "lemon", "top_k": 3}).status_code != 429
    response = auth_client.post(url, {"text": "lemon", "top_k": 3})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 86400
    assert "You are searching faster than this server allows" in response.content.decode()


def test_an_htmx_request_over_the_rate_gets_the_message_in_the_message_area(auth_client, settings):
    settings.TINYRAG_SEARCH_RATE = "1/day"
    url = reverse("search:similar", args=[1])
    auth_client.post(url, HTTP_HX_REQUEST="true")
    response = auth_client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 429
    assert (response["HX-Retarget"], response["HX-Reswap"]) == ("#messages", "innerHTML")
    assert response.content.decode().startswith('<li class="error">You are searching faster')


def test_page_rates_are_per_user(auth_client, other_user, settings):
    from django.test import Client

    settings.TINYRAG_DESCRIBE_RATE = "1/day"
    bob = Client()
    bob.force_login(other_user)
    for who in (auth_client, bob):
        assert who.post(reverse("search:describe", args=[1])).status_code == 404  # counted
    assert auth_client.post(reverse("search:describe", args=[1])).status_code == 429


def test_add_is_one_insert_that_respects_live_entries_and_replaces_expired_ones():
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert cache.add("slot", 1, 3600) is True
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert cache.add("slot", 2, 3600) is False  # present: left alone
    assert cache.get("slot") == 1
    with connection.cursor() as cursor:  # its hour passes
        cursor.execute(
            "UPDATE tinyrag_cache SET expires = %s WHERE cache_key = %s",
            [timezone.now() - timedelta(seconds=1), cache.make_key("slot")],
        )
    assert cache.add("slot", 3, 3600) is True  # expired: replaced
    assert cache.get("slot") == 3


def test_add_now_and_then_deletes_every_expired_entry(monkeypatch):
    from tinyrag_site import cache as cache_module

    for name in ("old-1", "old-2"):
        cache.add(name, 0, 3600)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE tinyrag_cache SET expires = %s", [timezone.now() - timedelta(seconds=1)]
        )
    monkeypatch.setattr(cache_module, "PURGE_EVERY", 1)  # this time
    cache.add("new", 0, 3600)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM tinyrag_cache")
        assert cursor.fetchone()[0] == 1


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(1, "1 second"), (45, "45 seconds"), (89, "89 seconds"), (90, "2 minutes"),
     (900, "15 minutes"), (5399, "90 minutes"), (5400, "2 hours"), (86400, "24 hours")],
)  # fmt: skip
def test_waits_are_said_in_words(seconds, words):
    from tinyrag_site.throttling import in_words

    assert in_words(seconds) == words
