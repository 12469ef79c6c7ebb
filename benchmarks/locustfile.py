"""Locust users for benchmarks/load.py: API searches, mixed text and image, on a token.

Configured by load.py through the environment: TINYRAG_LOAD_TOKEN (an API token),
TINYRAG_LOAD_REQUESTS (stop after this many), TINYRAG_LOAD_IMAGE_SHARE (fraction of image
searches, spread evenly). Every response but 201 is a failure. The run ends by itself once
the last request has completed.
"""

from __future__ import annotations

import io
import itertools
import os
import sys

import gevent
import numpy as np
from locust import HttpUser, constant, events, task
from locust.exception import StopUser
from PIL import Image

TOKEN = os.environ["TINYRAG_LOAD_TOKEN"]
TOTAL = int(os.environ.get("TINYRAG_LOAD_REQUESTS", "2000"))
IMAGE_SHARE = float(os.environ.get("TINYRAG_LOAD_IMAGE_SHARE", "0.3"))
WORDS = ["cat", "lemon", "school bus", "teapot", "volleyball", "goldfish", "pizza", "umbrella",
         "bridge", "mushroom", "koala", "sports car", "candle", "pretzel", "jellyfish"]  # fmt: skip


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


IMAGES = [_jpeg(seed) for seed in range(8)]
_issued = itertools.count()
_completed = itertools.count(1)
_runner = []  # the runner, once locust has made it


@events.init.add_listener
def _remember_runner(environment, **kwargs):
    _runner.append(environment.runner)


@events.quitting.add_listener
def _print_errors(environment, **kwargs):
    for error in environment.stats.errors.values():
        print(f"  {error.occurrences} x {error.name}: {error.error}", file=sys.stderr)


@events.request.add_listener
def _stop_after_the_last(**kwargs):
    if next(_completed) == TOTAL:
        gevent.spawn(_runner[0].quit)


class ApiSearcher(HttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.client.headers["Authorization"] = f"Token {TOKEN}"

    @task
    def search(self):
        n = next(_issued)
        if n >= TOTAL:
            raise StopUser()
        # image searches spread evenly through the run, e.g. 3 of every 10 at 0.3
        if int((n + 1) * IMAGE_SHARE) > int(n * IMAGE_SHARE):
            files = {"image": (f"q{n}.jpg", IMAGES[n % len(IMAGES)], "image/jpeg")}
            request = self.client.post(
                "/api/v1/search/image",
                files=files,
                data={"top_k": "10"},
                name="search/image",
                catch_response=True,
            )
        else:
            request = self.client.post(
                "/api/v1/search/text",
                json={"text": f"a photo of a {WORDS[n % len(WORDS)]}", "top_k": 10},
                name="search/text",
                catch_response=True,
            )
        with request as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
