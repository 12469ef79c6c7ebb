"""Locust users for benchmarks/load.py: API searches, mixed text and image, on a token.

Configured by load.py through the environment: TINYRAG_LOAD_TOKEN (an API token),
TINYRAG_LOAD_REQUESTS (stop after this many), TINYRAG_LOAD_IMAGE_SHARE (fraction of image
searches, spread evenly). Every response but 201 is a failure. The run ends by itself once
the last request has completed.

The users are FastHttpUsers (geventhttpclient): locust runs on the same cores as the server,
and python-requests' HttpUser spends several times the CPU per request that this client does;
that CPU would be taken from the server measured. Multipart bodies are made once, here.
"""

from __future__ import annotations

import io
import itertools
import os
import sys

import gevent
import numpy as np
from locust import FastHttpUser, constant, events, task
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


def _multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with `fields` and one JPEG file `image`; and its
    Content-Type."""
    boundary = f"tinyrag-load-{os.urandom(8).hex()}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


IMAGES = [_multipart({"top_k": "10"}, f"q{seed}.jpg", _jpeg(seed)) for seed in range(8)]
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


class ApiSearcher(FastHttpUser):
    wait_time = constant(0)
    # the server may take a while under load; locust's default (60 s) would be an error
    network_timeout = 120.0
    connection_timeout = 120.0

    @task
    def search(self):
        n = next(_issued)
        if n >= TOTAL:
            raise StopUser()
        authorization = {"Authorization": f"Token {TOKEN}"}
        # image searches spread evenly through the run, e.g. 3 of every 10 at 0.3
        if int((n + 1) * IMAGE_SHARE) > int(n * IMAGE_SHARE):
            body, content_type = IMAGES[n % len(IMAGES)]
            request = self.client.post(
                "/api/v1/search/image",
                data=body,
                headers={**authorization, "Content-Type": content_type},
                name="search/image",
                catch_response=True,
            )
        else:
            request = self.client.post(
                "/api/v1/search/text",
                json={"text": f"a photo of a {WORDS[n % len(WORDS)]}", "top_k": 10},
                headers=authorization,
                name="search/text",
                catch_response=True,
            )
        with request as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
