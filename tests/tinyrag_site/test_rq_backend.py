"""TINYRAG_TASKS_BACKEND=rq: the same Tasks API on RQ and a real Redis (Debian's redis-server,
started here), with Redis as the shared cache too. A description asked for through the API
and a collection sync queued by the command wait in Redis (the database's task table stays
empty), and `manage.py worker` runs them with RQ's worker; the rate limits count in Redis."""

from __future__ import annotations

import json

import pytest
import redis
import requests

from tests.fixtures.site import Site, index_tiny_imagenet, redis_server, tiny_models

pytestmark = pytest.mark.slow

QUEUES = """
import json
from django_tasks_db.models import DBTaskResult
from search.ops.jobs import waiting_tasks
print(json.dumps({"redis": waiting_tasks(), "database": DBTaskResult.objects.count(),
                  "descriptions": waiting_tasks("search.descriptions.tasks.generate_description")}))
"""

SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
print(Token.objects.create(user=get_user_model().objects.create_user("rita")).key)
"""

SYNCS = """
import json
from search.catalog.models import CollectionSync
syncs = CollectionSync.objects.all()
print(json.dumps([[s.status, s.trigger, s.vectors_reused, s.error] for s in syncs]))
"""


def last_json(output: str):
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def rq_site(tmp_path_factory, tiny_clip_dir, tiny_qwen2vl_dir):
    folder = tmp_path_factory.mktemp("rq")
    with redis_server(folder) as cache_url:
        queue_url = cache_url.rsplit("/", 1)[0] + "/1"
        site = Site(
            folder / "site",
            database="suite",
            TINYRAG_TASKS_BACKEND="rq",
            TINYRAG_REDIS_URL=queue_url,
            TINYRAG_CACHE_URL=cache_url,
            **tiny_models(tiny_clip_dir, tiny_qwen2vl_dir),
            # a day's windows: the counters are still in Redis when the test looks (a minute's
            # may end, and its keys expire, in between)
            TINYRAG_API_RATE="1000/day",
            TINYRAG_SEARCH_RATE="1000/day",
            TINYRAG_DESCRIBE_RATE="1000/day",
        )
        try:
            index_tiny_imagenet(site, folder)
            site.token = site.run("shell", "-c", SETUP).strip().splitlines()[-1]
            site.queue = redis.Redis.from_url(queue_url)
            site.cache = redis.Redis.from_url(cache_url)
            yield site
        finally:
            site.close()


def test_a_description_waits_in_redis_and_the_rq_worker_writes_it(rq_site: Site):
    headers = {"Authorization": f"Token {rq_site.token}"}
    with rq_site.gunicorn(workers=2) as url:
        query = requests.post(
            f"{url}/api/v1/search/text", json={"text": "lemon"}, headers=headers, timeout=120
        ).json()
        asked = requests.post(
            f"{url}/api/v1/queries/{query['id']}/descriptions",
            json={"image_id": query["results"][0]["image"]["id"]},
            headers=headers,
            timeout=120,
        )
        assert asked.status_code == 202, asked.text
        assert asked.json()["status"] == "queued"
        # the API's rate counters are in the cache's Redis database, not the queue's
        assert rq_site.cache.dbsize() > 0
        assert rq_site.queue.llen("rq:queue:default") == 1
        queues = last_json(rq_site.run("shell", "-c", QUEUES))
        assert queues == {"redis": 1, "database": 0, "descriptions": 1}

        rq_site.run("worker", "--batch", "--no-warm-up")

        done = requests.get(
            f"{url}/api/v1/descriptions/{asked.json()['id']}", headers=headers, timeout=60
        ).json()
    assert done["status"] == "done", done
    assert done["text"].strip()
    assert rq_site.queue.llen("rq:queue:default") == 0


def test_a_background_sync_runs_on_the_rq_worker(rq_site: Site):
    said = rq_site.run("sync_collection", "tiny-imagenet-200", "--background")
    assert "Queued a sync of tiny-imagenet-200" in said
    assert last_json(rq_site.run("shell", "-c", QUEUES))["redis"] == 1

    rq_site.run("worker", "--batch", "--no-warm-up")

    ((status, trigger, reused, error),) = last_json(rq_site.run("shell", "-c", SYNCS))
    assert (status, trigger, error) == ("done", "worker", "")
    classes = len(list((rq_site.data_dir / "tiny-imagenet-200" / "train").iterdir()))
    assert reused == 4 * classes  # nothing changed since the build: every vector kept
