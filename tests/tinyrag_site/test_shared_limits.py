"""Limits that hold across web workers: gunicorn with 2 workers, parallel clients.

Per-process state is what broke (each worker counted on its own, a check raced its count), so
these run the real server: login lockout, the API and page rate limits, the per-user cap on
pending descriptions and one generation for concurrent identical requests. The shared cache is
the database cache (the default) on the suite's own database vendor, and Redis for the
counters (TINYRAG_CACHE_URL=redis://...).
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures.site import Site, index_tiny_imagenet, redis_server, tiny_models

pytestmark = pytest.mark.slow

PARALLEL = 20
PASSWORD = "a-long-unusual-passphrase-9"
WRONG = "Please enter a correct username and password"

SETUP = f"""
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
tokens = {{}}
for name in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"):
    user = get_user_model().objects.create_user(name, password={PASSWORD!r})
    tokens[name] = Token.objects.create(user=user).key
print(json.dumps(tokens))
"""

COUNT_DESCRIPTIONS = """
import json
from search.descriptions.models import Description
from search.ops.jobs import waiting_tasks
print(json.dumps({
    "rows": Description.objects.count(),
    "generations": Description.objects.filter(generates=True).count(),
    "tasks": waiting_tasks(),
}))
"""


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory, tiny_clip_dir, tiny_qwen2vl_dir):
    """A site with the synthetic TinyImageNet indexed, users with API tokens (each test has
    its own, since counters outlive a test), and limits small enough to reach: 5 failed
    logins, 30 API requests and 10 searches a day, 3 pending descriptions."""
    folder = tmp_path_factory.mktemp("shared")
    site = Site(
        folder / "site",
        database="suite",
        **tiny_models(tiny_clip_dir, tiny_qwen2vl_dir),
        TINYRAG_LOGIN_FAILURE_LIMIT="5",
        # a day's window: no window boundary falls inside a test
        TINYRAG_API_RATE="30/day",
        TINYRAG_SEARCH_RATE="10/day",
        TINYRAG_DESCRIBE_RATE="1000/day",
        TINYRAG_DESCRIPTION_PENDING_MAX="3",
    )
    try:
        index_tiny_imagenet(site, folder)
        site.tokens = json.loads(site.run("shell", "-c", SETUP).strip().splitlines()[-1])
        yield site
    finally:
        site.close()


def in_parallel(calls) -> list:
    """Run the calls at the same moment (as far as threads allow); their results in order."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def login_form(url: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    html = session.get(f"{url}/accounts/login/", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    return session, token


def post_login(url: str, session: requests.Session, token: str, username: str, password: str):
    return session.post(
        f"{url}/accounts/login/",
        {"csrfmiddlewaretoken": token, "username": username, "password": password},
        allow_redirects=False,
        timeout=60,
    )


def logged_in_session(url: str, username: str) -> requests.Session:
    session, token = login_form(url)
    assert post_login(url, session, token, username, PASSWORD).status_code == 302
    return session


def check_login_lockout(url: str) -> None:
    forms = [login_form(url) for _ in range(PARALLEL)]
    answers = in_parallel(
        [lambda s=s, t=t: post_login(url, s, t, "alice", "wrong") for s, t in forms]
    )
    checked = [r for r in answers if r.status_code == 200 and WRONG in r.text]
    refused = [r for r in answers if r.status_code == 429]
    # exactly the limit's worth of passwords were checked, whichever worker answered
    assert (len(checked), len(refused)) == (5, PARALLEL - 5)
    session, token = login_form(url)
    assert post_login(url, session, token, "alice", PASSWORD).status_code == 429
    # the same address, another account: not locked out
    session, token = login_form(url)
    assert post_login(url, session, token, "bob", PASSWORD).status_code == 302


def check_api_rate(url: str, token: str) -> None:
    headers = {"Authorization": f"Token {token}"}
    answers = in_parallel(
        [
            lambda: requests.get(f"{url}/api/v1/queries/", headers=headers, timeout=60)
            for _ in range(2 * PARALLEL + 20)
        ]
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 30 + [429] * 30
    assert all(r.json()["error"]["code"] == "throttled" for r in answers if r.status_code == 429)


def test_login_lockout_and_api_rate_hold_across_two_workers(shared_site):
    with shared_site.gunicorn(workers=2) as url:
        check_login_lockout(url)
        check_api_rate(url, shared_site.tokens["carol"])


def test_the_same_limits_hold_with_redis_as_the_shared_cache(shared_site, tmp_path: Path):
    with redis_server(tmp_path) as redis_url:
        site = Site(shared_site.folder, **{**shared_site.env, "TINYRAG_CACHE_URL": redis_url})
        with site.gunicorn(workers=2) as url:
            check_login_lockout(url)
            check_api_rate(url, shared_site.tokens["carol"])


def test_page_searches_are_rate_limited_across_two_workers(shared_site):
    with shared_site.gunicorn(workers=2) as url:
        session = logged_in_session(url, "dave")
        html = session.get(f"{url}/", timeout=30).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        answers = in_parallel(
            [
                lambda: session.post(
                    f"{url}/search/",
                    {"csrfmiddlewaretoken": token, "text": "lemon", "top_k": "3"},
                    allow_redirects=False,
                    timeout=120,
                )
                for _ in range(PARALLEL)
            ]
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [302] * 10 + [429] * 10  # 10 searches ran, 10 were refused
        refused = next(r for r in answers if r.status_code == 429)
        assert "You are searching faster than this server allows" in refused.text
        assert int(refused.headers["Retry-After"]) > 0


def test_descriptions_are_capped_and_shared_across_two_workers(shared_site):
    api = "/api/v1"
    with shared_site.gunicorn(workers=2) as url:

        def call(method, path, token, **body):
            return requests.request(
                method,
                f"{url}{path}",
                json=body or None,
                headers={"Authorization": f"Token {token}"},
                timeout=120,
            )

        users = ["erin", "frank", "grace", "heidi"]
        queries = {
            name: call("post", f"{api}/search/text", shared_site.tokens[name], text="lemon").json()
            for name in users
        }
        image_id = queries["erin"]["results"][0]["image"]["id"]
        assert all(q["results"][0]["image"]["id"] == image_id for q in queries.values())

        # 4 users x 5 identical requests at once: one generation, one row per query
        answers = in_parallel(
            [
                lambda name=name: call(
                    "post",
                    f"{api}/queries/{queries[name]['id']}/descriptions",
                    shared_site.tokens[name],
                    image_id=image_id,
                )
                for name in users
                for _ in range(5)
            ]
        )
        assert [r.status_code for r in answers] == [202] * 20
        assert len({r.json()["id"] for r in answers}) == len(users)
        counts = json.loads(shared_site.run("shell", "-c", COUNT_DESCRIPTIONS).splitlines()[-1])
        assert counts == {"rows": 4, "generations": 1, "tasks": 1}

        # one user asking for 5 images at once: 3 fit under the cap, 2 are refused
        ivan = call("post", f"{api}/search/text", shared_site.tokens["ivan"], text="lemon").json()
        answers = in_parallel(
            [
                lambda i=r["image"]["id"]: call(
                    "post",
                    f"{api}/queries/{ivan['id']}/descriptions",
                    shared_site.tokens["ivan"],
                    image_id=i,
                )
                for r in ivan["results"][1:6]
            ]
        )
        assert sorted(r.status_code for r in answers) == [202] * 3 + [429] * 2
