"""Login throttling: per (username, client address) pair, a higher ceiling per address, the
admin login under the same policy, and the client address behind trusted proxies only.

Counters live in the shared cache (the database's by default; .ci/run runs these on Redis
too); the test that
two gunicorn workers share them is tests/tinyrag_site/test_shared_limits.py.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.fixtures.backends import cache_entries

pytestmark = pytest.mark.django_db

WRONG = "Please enter a correct username and password"
LOCKED = "Too many failed logins for this account from your address."


def login(address: str, username: str, password: str, *, url: str | None = None, **headers):
    client = Client(REMOTE_ADDR=address, **headers)
    response = client.post(url or reverse("login"), {"username": username, "password": password})
    return client, response


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def limits(settings):
    settings.TINYRAG_LOGIN_FAILURE_LIMIT = 3
    settings.TINYRAG_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    settings.TINYRAG_LOGIN_FAILURE_WINDOW = 900
    return settings


def test_failures_for_made_up_usernames_do_not_lock_out_others_at_that_address(
    limits, user, password
):
    for _ in range(5):  # past the pair limit of 3, under the address ceiling of 6
        _, response = login("10.0.0.1", "nobody", "guess")
    assert LOCKED in response.content.decode()
    client, response = login("10.0.0.1", "alice", password)
    assert response.status_code == 302
    assert logged_in(client)


def test_wrong_passwords_lock_that_pair_only(limits, user, password):
    for _ in range(3):
        _, response = login("10.0.0.1", "alice", "wrong")
        assert response.status_code == 200
        assert WRONG in response.content.decode()

    client, response = login("10.0.0.1", "ALICE ", password)  # the same account, any spelling
    assert response.status_code == 429  # even the right password, from the guessing address
    assert int(response["Retry-After"]) <= 900
    assert LOCKED in response.content.decode()
    assert not logged_in(client)

    client, response = login("10.0.0.2", "alice", password)  # alice elsewhere is not locked out
    assert response.status_code == 302
    assert logged_in(client)


def test_a_correct_password_resets_the_pair(limits, user, password):
    for _ in range(2):
        login("10.0.0.1", "alice", "wrong")
    assert logged_in(login("10.0.0.1", "alice", password)[0])
    for _ in range(2):  # two more failures: 2 of 3, not 4
        _, response = login("10.0.0.1", "alice", "wrong")
    assert WRONG in response.content.decode()
    assert logged_in(login("10.0.0.1", "alice", password)[0])


def test_an_address_spraying_many_usernames_reaches_its_ceiling(limits, user, password):
    for n in range(6):  # 6 usernames, one failure each: no pair is near its limit
        _, response = login("10.0.0.9", f"user{n}", "guess")
        assert WRONG in response.content.decode()
    client, response = login("10.0.0.9", "alice", password)
    assert response.status_code == 429
    assert not logged_in(client)
    assert logged_in(login("10.0.0.10", "alice", password)[0])  # another address: fine


def test_successful_logins_do_not_count_against_the_address(limits, user, password):
    for _ in range(8):  # more than the address ceiling, all correct
        assert logged_in(login("10.0.0.1", "alice", password)[0])


def test_a_locked_pair_has_no_password_checked(limits, user, password, monkeypatch):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    checked = []
    original = PBKDF2PasswordHasher.verify
    monkeypatch.setattr(
        PBKDF2PasswordHasher,
        "verify",
        lambda self, pw, encoded: checked.append(pw) or original(self, pw, encoded),
    )
    for _ in range(6):
        login("10.0.0.1", "alice", "wrong")
    assert checked == ["wrong"] * 3  # the attempts past the limit never reach the hash


def test_admin_login_goes_through_the_same_throttle(limits, admin_user):
    url = reverse("admin:login")
    for _ in range(3):
        _, response = login("10.0.0.1", "admin", "wrong", url=url)
        assert response.status_code == 200
    client, response = login("10.0.0.1", "admin", "password", url=url)  # the right one
    assert LOCKED in response.content.decode()
    assert not logged_in(client)
    client, response = login("10.0.0.2", "admin", "password", url=url)
    assert response.status_code == 302
    assert logged_in(client)


def test_forwarded_for_is_ignored_without_trusted_proxies(limits, user, password):
    for n in range(3):  # an attacker who makes up a new X-Forwarded-For for every guess
        login("10.0.0.1", "alice", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    _, response = login("10.0.0.1", "alice", password, HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_client_is_what_the_proxy_saw(limits, user, password):
    limits.TINYRAG_TRUSTED_PROXIES = 1
    proxy = "172.18.0.5"
    for n in range(3):  # the client's own X-Forwarded-For entries, left of the proxy's, vary
        login(proxy, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.7")
    _, response = login(proxy, "alice", password, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert response.status_code == 429  # 203.0.113.7 is locked...
    client, response = login(proxy, "alice", password, HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert logged_in(client)  # ...another client behind the same proxy is not


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        (0, "10.0.0.1", "192.0.2.1", "10.0.0.1"),
        (1, "10.0.0.1", "192.0.2.1", "192.0.2.1"),
        (1, "10.0.0.1", "6.6.6.6, 192.0.2.1", "192.0.2.1"),
        (2, "10.0.0.1", "6.6.6.6, 192.0.2.1, 10.0.0.2", "192.0.2.1"),
        (2, "10.0.0.1", "192.0.2.1", "10.0.0.1"),  # fewer hops than proxies: not through them
        (1, "10.0.0.1", "", "10.0.0.1"),
    ],
)
def test_client_address(settings, rf, proxies, remote, forwarded, expected):
    from tinyrag_site.throttling import client_address

    settings.TINYRAG_TRUSTED_PROXIES = proxies
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_every_login_attempt_counts_against_the_address_rate(limits, user, password):
    limits.TINYRAG_LOGIN_RATE = "3/hour"  # right or wrong, each costs a password hash
    for _ in range(3):
        assert logged_in(login("10.0.0.1", "alice", password)[0])
    client, response = login("10.0.0.1", "alice", password)
    assert response.status_code == 429
    assert "Too many logins from your address." in response.content.decode()
    assert logged_in(login("10.0.0.2", "alice", password)[0])


def test_an_address_past_its_ceiling_adds_nothing_to_the_cache(limits, user):
    for n in range(6):
        login("10.0.0.9", f"user{n}", "guess")
    before = cache_entries()
    for n in range(20):  # made-up usernames: no new (username, address) entries
        _, response = login("10.0.0.9", f"made-up-{n}", "guess")
        assert response.status_code == 429
    assert cache_entries() == before


def test_an_ipv6_client_is_counted_by_its_64(limits, user, password):
    for n in range(3):  # one subscriber, a fresh address of its /64 for every guess
        login(f"2001:db8:0:7::{n + 1}", "alice", "wrong")
    _, response = login("2001:db8:0:7::ffff", "alice", password)
    assert response.status_code == 429
    assert logged_in(login("2001:db8:0:8::1", "alice", password)[0])  # the next /64


def test_an_ipv4_mapped_address_is_its_ipv4_address(limits, user, password):
    for _ in range(3):
        login("::ffff:10.0.0.1", "alice", "wrong")
    _, response = login("10.0.0.1", "alice", password)
    assert response.status_code == 429


def test_the_password_change_page_does_not_let_a_session_guess_the_password(limits, user, password):
    client = Client(REMOTE_ADDR="10.0.0.1")
    client.force_login(user)
    url = reverse("password_change")
    new = {
        "new_password1": "another-long-passphrase-77",
        "new_password2": "another-long-passphrase-77",
    }
    for _ in range(3):
        response = client.post(url, {"old_password": "guess", **new})
        assert "Your old password was entered incorrectly" in response.content.decode()
    response = client.post(url, {"old_password": password, **new})
    assert LOCKED in response.content.decode()  # the right one too, for now
    user.refresh_from_db()
    assert user.check_password(password)


def test_signups_are_limited_per_address(db, settings):
    settings.TINYRAG_SIGNUP_RATE = "2/hour"
    codes = []
    for n in range(3):
        client = Client(REMOTE_ADDR="10.0.0.1")
        response = client.post(
            reverse("signup"),
            {"username": f"new{n}", "password1": "a-long-unusual-passphrase-9",
             "password2": "a-long-unusual-passphrase-9"},
        )  # fmt: skip
        codes.append(response.status_code)
    assert codes == [302, 302, 429]
    assert "Too many accounts were created from your address" in response.content.decode()
    other = Client(REMOTE_ADDR="10.0.0.2").post(
        reverse("signup"),
        {"username": "new9", "password1": "a-long-unusual-passphrase-9",
         "password2": "a-long-unusual-passphrase-9"},
    )  # fmt: skip
    assert other.status_code == 302
