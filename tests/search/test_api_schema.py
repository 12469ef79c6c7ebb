"""The OpenAPI schema: valid, complete and exact; schemathesis finds nothing against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS

from search.catalog.models import ImageClass

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

# Every operation and every status it can answer: the contract clients rely on.
OPERATIONS = {
    ("/api/v1/search/text", "post"): {"201", "400", "401", "403", "415", "429", "503"},
    ("/api/v1/search/image", "post"): {"201", "400", "401", "403", "415", "429", "503"},
    ("/api/v1/queries/", "get"): {"200", "401", "404", "429"},
    ("/api/v1/queries/{id}", "get"): {"200", "401", "404", "429"},
    ("/api/v1/queries/{id}", "delete"): {"204", "401", "403", "404", "429"},
    ("/api/v1/queries/{id}/rerun", "post"): {"201", "400", "401", "403", "404", "429", "503"},
    ("/api/v1/queries/{id}/descriptions", "post"): {
        "202",
        "400",
        "401",
        "403",
        "404",
        "409",
        "415",
        "429",
        "503",
    },
    ("/api/v1/descriptions/{id}", "get"): {"200", "401", "404", "429"},
    ("/api/v1/images/{id}", "get"): {"200", "401", "404", "429"},
    ("/api/v1/classes/", "get"): {"200", "401", "404", "429"},
}
# What no JSON schema can say about a valid search request, taught to schemathesis by a hook
# module: (1) an upload that claims to be image/jpeg (png, webp, gif, bmp) is a real file of
# that format, so valid cases get real images of random size, mode and pixels; (2) a class
# filter names a class of the indexed dataset, so every schema-valid class_filter becomes a
# real wnid, while schema-violating ones (not a string, empty, too long) stay invalid. (A hook,
# because schemathesis 4.32 applies `[parameters]` dictionaries to JSON bodies only.)
HOOKS = """
import io
import random

import schemathesis
from hypothesis import strategies as st
from PIL import Image

WNIDS = {wnids!r}
MODES = {{
    "JPEG": ["RGB", "L", "CMYK"],
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "WEBP": ["RGB", "RGBA"],
    "GIF": ["P", "L"],
    "BMP": ["RGB", "L", "P", "1"],
}}


@st.composite
def image_file(draw, fmt):
    width = draw(st.integers(1, 64))
    # within the aspect ratio uploads may have (TINYRAG_UPLOAD_MAX_ASPECT, 20:1)
    height = draw(st.integers(max(1, -(-width // 20)), min(64, 20 * width)))
    mode = draw(st.sampled_from(MODES[fmt]))
    pixels = random.Random(draw(st.integers(0, 2**32 - 1))).randbytes(width * height * 3)
    image = Image.frombytes("RGB", (width, height), pixels)
    image = image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


for fmt in MODES:
    schemathesis.openapi.media_type(f"image/{{fmt.lower()}}", image_file(fmt))


@schemathesis.hook
def map_body(context, body):
    # A multipart body whose parts have media types comes wrapped: its fields in .body.
    wrapped = hasattr(body, "content_types")
    fields = body.body if wrapped else body
    value = fields.get("class_filter") if isinstance(fields, dict) else None
    if isinstance(value, str) and 1 <= len(value) <= 64 and value not in WNIDS:
        fields = {{**fields, "class_filter": WNIDS[len(value) % len(WNIDS)]}}
        if not wrapped:
            return fields
        body.body = fields
    return body
"""
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def schema(client, db) -> dict:
    # no login needed; like every API request, it is counted against the caller's rate (db)
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def test_schema_validates_without_warnings(tmp_path, capsys):
    GENERATOR_STATS.reset()
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "openapi: 3.0.3" in out.read_text()
    assert "Warning" not in capsys.readouterr().err


def test_schema_lists_exactly_the_api_operations(schema):
    found = {
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("path", "method"), sorted(OPERATIONS))
def test_each_operation_documents_every_status_and_the_error_format(schema, path, method):
    operation = schema["paths"][path][method]
    assert set(operation["responses"]) == OPERATIONS[(path, method)]
    for code, response in operation["responses"].items():
        if code.startswith("4") or code.startswith("5"):
            content = response["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/Error"}
    assert operation["security"] == [{"tokenAuth": []}, {"cookieAuth": []}]
    assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]
    assert operation["responses"]["429"]["headers"]["Retry-After"]


def test_error_schema_is_the_handlers_format(schema):
    components = schema["components"]["schemas"]
    assert components["Error"]["required"] == ["error"]
    detail = components["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "fields"}
    assert detail["required"] == ["code", "message"]


def test_image_search_takes_multipart_and_text_search_json(schema):
    image = schema["paths"]["/api/v1/search/image"]["post"]["requestBody"]["content"]
    assert list(image) == ["multipart/form-data"]
    ref = image["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][ref]
    assert fields["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "description": fields["properties"]["image"]["description"],
    }
    assert fields["required"] == ["image"]
    text = schema["paths"]["/api/v1/search/text"]["post"]["requestBody"]["content"]
    assert list(text) == ["application/json"]


@pytest.mark.slow
def test_schemathesis_finds_nothing(
    transactional_db, live_server, index_built, api_token, api_rate, tmp_path
):
    """Every check, all phases, against the live server with a built index and a token."""
    api_rate("100000/minute")  # the real rate would answer most of the run with 429
    scratch = tmp_path / "schemathesis"  # .hypothesis/ and reports land here
    scratch.mkdir()
    hooks = scratch / "tinyrag_hooks.py"
    wnids = sorted(ImageClass.objects.values_list("wnid", flat=True))
    hooks.write_text(HOOKS.format(wnids=wnids))
    started = time.monotonic()
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{live_server.url}/api/schema/",
            "--checks",
            "all",
            "--header",
            f"Authorization: Token {api_token}",
            "--max-examples",
            "25",
            "--max-time",
            "35",
            "--seed",
            "20240601",
            "--workers",
            "1",
            "--no-color",
            # To dig into a failure, e.g. "--report ndjson --report-dir /tmp/st" (then `st replay`)
            *os.environ.get("TINYRAG_SCHEMATHESIS_ARGS", "").split(),
        ],
        cwd=scratch,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"after {elapsed:.0f} s:\n{result.stdout}\n{result.stderr}"


def test_text_search_documents_the_language_and_the_route(schema):
    import re

    from search.queries.routing import accepted_languages

    text = schema["paths"]["/api/v1/search/text"]["post"]["requestBody"]["content"]
    ref = text["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    request = schema["components"]["schemas"][ref]
    language = request["properties"]["language"]
    assert "language" not in request.get("required", [])
    (with_pattern,) = [s for s in language.get("oneOf", [language]) if "pattern" in s]
    pattern = re.compile(with_pattern["pattern"])
    accepted = ["", "auto", "en", "id", "other", "de", "fr", "zh", "ja"]
    assert all(pattern.search(code) for code in accepted)
    assert set(accepted) - {""} <= set(accepted_languages())
    for refused in ("xx", "EN", "id-ID", "english", "en ", "enid"):
        assert not pattern.search(refused), refused
    query = schema["components"]["schemas"]["SearchQueryWithResults"]["properties"]
    assert {"language", "language_chosen", "route", "embedded_text"} <= set(query)
    assert query["language_chosen"]["type"] == "boolean"
    route = query["route"]
    names = [c["$ref"].rsplit("/", 1)[1] for c in route.get("oneOf", []) if "$ref" in c]
    choices = {v for n in names for v in schema["components"]["schemas"][n]["enum"]}
    assert choices - {""} == {"clip", "multilingual", "translate"}
