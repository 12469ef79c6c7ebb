"""Structured logs: JSON lines carrying the request id that the response echoes."""

from __future__ import annotations

import json
import logging

from django.test import Client

from tinyrag_site.logs import JsonFormatter, RequestIdFilter, request_id


def test_response_echoes_a_valid_request_id_and_replaces_a_bad_one():
    assert Client().get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    made = Client().get("/healthz", HTTP_X_REQUEST_ID="bad id\n")["X-Request-ID"]
    assert made != "bad id\n"
    assert len(made) == 32
    assert Client().get("/healthz")["X-Request-ID"] != Client().get("/healthz")["X-Request-ID"]


def test_json_line_carries_the_request_id():
    record = logging.LogRecord("search", logging.WARNING, __file__, 1, "index %s", ("tiny",), None)
    token = request_id.set("req-42")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "index tiny"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "req-42"
    assert entry["logger"] == "search"
