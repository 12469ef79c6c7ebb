"""search/queries/microbatch.py and the batched search path: concurrent queries embedded and
searched together get exactly what each gets alone.

Batches are made to form, not hoped for: the first batch's run is held until the other
callers are queued (`held_first_call`), so the rest arrive as one batch. Expected results
come from the same queries run one at a time with batching off (TINYRAG_BATCH_MAX=1: the
direct path, no batcher at all) and, for the index, from IndexService.search row by row.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from PIL import Image as PILImage

from search.catalog.models import Image
from search.errors import Unavailable
from search.index.service import get_index_service
from search.ml.registry import get_clip_embedder
from search.queries import microbatch, retrieval, services
from search.queries.api import render_query
from search.queries.microbatch import BatchRecord, MicroBatcher, SearchQueueFull
from search.queries.models import SearchQuery
from search.web.api_errors import exception_handler

EVENT_TIMEOUT = 60  # seconds: a generous bound on waiting for an event, never a speed check
TEXTS = ["a red lemon", "a fishing reel", "a cat", "lemons on a table", "an old reel", "dog"]


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def held_first_call(function, release_when):
    """`function`, except that its first call, once entered, waits until
    `release_when(*its arguments)` holds. A batcher runs its batches one after another, so
    while the first is held the next callers queue up behind it."""
    entered = threading.Event()

    def held(*args, **kwargs):
        if not entered.is_set():
            entered.set()
            wait_until(lambda: release_when(*args, **kwargs), "the first batch's release")
        return function(*args, **kwargs)

    held.entered = entered
    return held


def first_then_rest(calls, first_entered: threading.Event, *, close_connections=False) -> list:
    """calls[0] in a thread, then -- once its batch is held (`first_entered`) -- the others,
    each in its own thread; the results (or the exception each raised) in order."""

    def run(call):
        try:
            return call()
        except Exception as exc:
            return exc
        finally:
            if close_connections:
                connection.close()  # this thread's own database connection

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, calls[0])]
        wait_until(first_entered.is_set, "the first batch")
        futures += [pool.submit(run, call) for call in calls[1:]]
        return [future.result() for future in futures]


@pytest.fixture
def batcher_of():
    """MicroBatchers made by the test, closed after it."""
    made: list[MicroBatcher] = []

    def make(run, **options) -> MicroBatcher:
        options.setdefault("max_batch", 8)
        options.setdefault("max_wait_s", 0.0)
        made.append(MicroBatcher(run, name="test", **options))
        return made[-1]

    yield make
    for batcher in made:
        batcher.close()


# --- MicroBatcher ----------------------------------------------------------------------------


def test_each_caller_gets_its_own_result_from_one_batch(batcher_of):
    seen: list[list[int]] = []

    def run(items):
        seen.append(list(items))
        return [item * 10 for item in items]

    batcher = batcher_of(run)
    batcher.run = held_first_call(run, lambda items: batcher.waiting() == 4)
    results = first_then_rest(
        [lambda n=n: batcher.submit(n) for n in range(5)], batcher.run.entered
    )
    assert results == [0, 10, 20, 30, 40]
    assert [len(items) for items in seen] == [1, 4]  # the four queued behind ran together
    assert sorted(item for items in seen for item in items) == [0, 1, 2, 3, 4]
    assert [record.size for record in batcher.recent] == [1, 4]


def test_an_exception_reaches_every_caller_of_its_batch(batcher_of):
    def run(items):
        if len(items) > 1:
            raise ValueError(f"no batch of {len(items)}")
        return items

    batcher = batcher_of(run)
    batcher.run = held_first_call(run, lambda items: batcher.waiting() == 3)
    results = first_then_rest(
        [lambda n=n: batcher.submit(n) for n in range(4)], batcher.run.entered
    )
    ok = [r for r in results if not isinstance(r, Exception)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert (len(ok), len(failed)) == (1, 3)
    assert all(type(e) is ValueError and str(e) == "no batch of 3" for e in failed)
    assert len({id(e) for e in failed}) == 3  # each caller raised its own copy
    assert batcher.submit(7) == 7  # the thread lives on after a failed batch


def test_an_application_error_keeps_its_type_and_message(batcher_of):
    from search.ml.errors import ModelLoadError

    def run(items):
        raise ModelLoadError("org/clip", "TINYRAG_CLIP_MODEL", "not cached")

    batcher = batcher_of(run)
    with pytest.raises(ModelLoadError) as caught:
        batcher.submit(1)
    assert caught.value.setting == "TINYRAG_CLIP_MODEL"
    assert str(caught.value).startswith("Cannot load model 'org/clip': not cached.")
    assert caught.value.status == 503


def test_a_lone_item_runs_at_once_without_waiting(batcher_of):
    batcher = batcher_of(lambda items: [item + 1 for item in items], max_wait_s=5.0)
    assert batcher.submit(1) == 2
    assert batcher.submit(2) == 3
    assert list(batcher.recent) == [BatchRecord(1, waited=False), BatchRecord(1, waited=False)]


def test_a_batch_waits_for_more_only_while_queries_are_queuing(batcher_of):
    def run(items):
        return items

    batcher = batcher_of(run, max_wait_s=0.05)
    batcher.run = held_first_call(run, lambda items: batcher.waiting() == 2)
    first_then_rest([lambda n=n: batcher.submit(n) for n in range(3)], batcher.run.entered)
    batcher.submit(9)  # after a batch of two: queries are arriving, so it waits a little
    batcher.submit(9)  # after a batch of one: not
    records = list(batcher.recent)
    assert [r.size for r in records] == [1, 2, 1, 1]
    assert records[0].waited is False
    assert [r.waited for r in records[2:]] == [True, False]


def test_a_full_queue_refuses_at_once_and_the_rest_still_run(batcher_of):
    release = threading.Event()

    def run(items):
        wait_until(release.is_set, "the release")
        return items

    batcher = batcher_of(run, max_batch=2, queue_size=2)
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(batcher.submit, "running")
        wait_until(lambda: len(batcher.recent) == 1, "the first batch")
        queued = [pool.submit(batcher.submit, n) for n in range(2)]
        wait_until(lambda: batcher.waiting() == 2, "two queued items")
        with pytest.raises(SearchQueueFull) as caught:
            batcher.submit("one too many")
        release.set()
        assert [running.result(), *(f.result() for f in queued)] == ["running", 0, 1]
    assert isinstance(caught.value, Unavailable)
    assert (caught.value.status, caught.value.retry_after) == (503, 1)
    response = exception_handler(caught.value, {})
    assert (response.status_code, response.data["error"]["code"]) == (503, "busy")
    assert response.data["error"]["message"] == (
        "The server is busy with other searches. Try again in a moment."
    )


def test_a_forked_process_starts_its_own_thread(batcher_of, monkeypatch):
    import os

    batcher = batcher_of(lambda items: [item * 2 for item in items])
    assert batcher.submit(1) == 2
    parent_thread = batcher.thread
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as in a gunicorn worker after fork
    assert batcher.thread is None  # the parent's thread is not this process's
    assert batcher.submit(2) == 4
    assert batcher.thread not in (None, parent_thread)
    assert batcher.thread.is_alive()


def test_a_closed_batcher_runs_callers_directly(batcher_of):
    batcher = batcher_of(lambda items: [len(items)] * len(items))
    assert batcher.submit("a") == 1
    thread = batcher.thread
    batcher.close()
    thread.join(EVENT_TIMEOUT)
    assert not thread.is_alive()
    assert batcher.submit("b") == 1
    assert len(batcher.recent) == 1  # the second ran in the caller, outside any batch


def test_the_settings_make_the_batcher_and_one_turns_it_off(settings):
    settings.TINYRAG_BATCH_MAX, settings.TINYRAG_BATCH_WAIT_MS = 5, 7
    made = microbatch.batcher("settings-test", lambda items: items)
    assert (made.max_batch, made.max_wait_s) == (5, 0.007)
    assert microbatch.batcher("settings-test", lambda items: items) is made
    settings.TINYRAG_BATCH_MAX = 1
    assert microbatch.batcher("settings-test", lambda items: items) is None
    assert made.submit("x") == "x"  # closed by the change: runs directly


def test_bad_batch_settings_are_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.TINYRAG_BATCH_MAX = 0
    with pytest.raises(ImproperlyConfigured, match="TINYRAG_BATCH_MAX=0"):
        microbatch.batcher("settings-test", lambda items: items)


# --- the search path -------------------------------------------------------------------------


@pytest.fixture
def fp32(clip_settings):
    """Float32 (the contract between batched and lone rows is 1e-5 in fp32), set before the
    index is built; batching on, with no wait (the test makes the batches form)."""
    clip_settings.TINYRAG_FORCE_FP32 = True
    clip_settings.TINYRAG_BATCH_MAX = 16
    clip_settings.TINYRAG_BATCH_WAIT_MS = 0
    return clip_settings


def ranked(query: SearchQuery) -> tuple[list[int], list[float]]:
    rows = list(query.results.order_by("rank").values_list("image_id", "score"))
    return [image_id for image_id, _ in rows], [score for _, score in rows]


def assert_same_results(batched: list[SearchQuery], alone: list[SearchQuery]) -> None:
    for got, expected in zip(batched, alone, strict=True):
        got_ids, got_scores = ranked(got)
        expected_ids, expected_scores = ranked(expected)
        assert got_ids == expected_ids
        np.testing.assert_allclose(got_scores, expected_scores, rtol=0, atol=1e-5)


def hold_batches(monkeypatch, embed_method: str, embed_batcher: str, embed_run, total: int):
    """Hold the first embedding until the other `total - 1` queries queue behind it, and the
    first index search until all `total` are in it or queued behind it; the two batchers (for
    their records) and the held embedding (to start the others once it is entered)."""
    embed_queue = microbatch.batcher(embed_batcher, embed_run)
    search_queue = microbatch.batcher("search", retrieval._search_rows)
    clip, index = get_clip_embedder(), get_index_service()
    embed = held_first_call(
        getattr(clip, embed_method), lambda items: embed_queue.waiting() == total - 1
    )
    monkeypatch.setattr(clip, embed_method, embed)
    search = held_first_call(
        index.search, lambda vectors, k: len(vectors) + search_queue.waiting() == total
    )
    monkeypatch.setattr(index, "search", search)
    return embed_queue, search_queue, embed.entered


def assert_batched(queue: MicroBatcher, total: int) -> None:
    """Every query went through `queue`, and some went together."""
    sizes = [record.size for record in queue.recent]
    assert sum(sizes) == total
    assert max(sizes) > 1


@pytest.fixture
def one_writer_at_a_time(monkeypatch):
    """Write transactions of the test's threads one after another. The suite's SQLite
    database is in memory with a shared cache, where a second writer fails at once ("database
    table is locked") instead of waiting as it does on a database file or PostgreSQL."""
    lock = threading.RLock()  # re-entered: Django opens atomic blocks inside atomic blocks
    atomic = transaction.atomic

    @contextlib.contextmanager
    def one_writer(*args, **kwargs):
        with lock, atomic(*args, **kwargs):
            yield

    monkeypatch.setattr(transaction, "atomic", one_writer)


def run_alone(fp32, calls) -> list[SearchQuery]:
    fp32.TINYRAG_BATCH_MAX = 1  # the direct path: no batcher
    assert microbatch.batcher("search", retrieval._search_rows) is None
    return [call() for call in calls]


@pytest.mark.django_db(transaction=True)
def test_concurrent_text_searches_get_what_each_gets_alone(
    fp32, index_built, user, monkeypatch, one_writer_at_a_time
):
    top_ks = [3, 5, 10, 1, 20, 7]
    calls = [
        lambda t=t, k=k: services.text_search(user=user, text=t, top_k=k)
        for t, k in zip(TEXTS, top_ks, strict=True)
    ]
    texts, searches, held = hold_batches(
        monkeypatch, "embed_texts", "clip-text", retrieval._embed_texts, len(calls)
    )
    batched = first_then_rest(calls, held, close_connections=True)
    assert not [q for q in batched if isinstance(q, Exception)], batched
    assert [r.size for r in texts.recent] == [1, len(calls) - 1]
    assert_batched(searches, len(calls))
    monkeypatch.undo()
    assert_same_results(batched, run_alone(fp32, calls))


@pytest.mark.django_db(transaction=True)
def test_concurrent_image_searches_get_what_each_gets_alone(
    fp32, index_built, user, monkeypatch, one_writer_at_a_time
):
    images = list(Image.objects.filter(split="train").order_by("id"))[::4][:5]

    def png(image: Image) -> bytes:
        buffer = io.BytesIO()
        with PILImage.open(index_built.root / image.path) as opened:
            opened.convert("RGB").save(buffer, "PNG")
        return buffer.getvalue()

    uploads = [png(image) for image in images]
    calls = [
        lambda data=data, k=k: services.image_search(user=user, data=data, top_k=k)
        for data, k in zip(uploads, [4, 2, 6, 3, 5], strict=True)
    ]
    # "more like this" leaves its own image out: exclusions differ row by row in one batch
    calls += [
        lambda image=image: services.similar_search(user=user, image_id=image.pk, top_k=4)
        for image in images[:2]
    ]
    embeds, searches, held = hold_batches(
        monkeypatch, "embed_images", "clip-image", retrieval._embed_images, len(calls)
    )
    batched = first_then_rest(calls, held, close_connections=True)
    assert not [q for q in batched if isinstance(q, Exception)], batched
    assert [r.size for r in embeds.recent] == [1, len(calls) - 1]
    assert_batched(searches, len(calls))
    for query, image in zip(batched[-2:], images[:2], strict=True):
        assert image.pk not in ranked(query)[0]
    monkeypatch.undo()
    assert_same_results(batched, run_alone(fp32, calls))


@pytest.mark.django_db
def test_a_batch_of_rows_is_searched_as_each_row_alone(fp32, index_built):
    index = get_index_service()
    vectors = index_built.vectors[[0, 3, 7, 11]] + 0.1  # near neighbours, not themselves
    ids = [int(i) for i in index_built.ids]
    rows = [
        retrieval.SearchRow(index, vectors[0], k=5),
        retrieval.SearchRow(index, vectors[1], k=1, exclude_ids=frozenset(ids[3:6])),
        retrieval.SearchRow(index, vectors[2], k=12),
        retrieval.SearchRow(index, vectors[3], k=len(ids), exclude_ids=frozenset({ids[11]})),
    ]
    found = retrieval._search_rows(rows)
    for row, got in zip(rows, found, strict=True):
        scores, expected = index.search(row.vector[None], row.k, exclude_ids=row.exclude_ids)
        assert [i for i, _ in got] == [int(i) for i in expected[0] if i != -1]
        np.testing.assert_allclose([s for _, s in got], scores[0][: len(got)], atol=1e-5)
        assert not row.exclude_ids & {i for i, _ in got}
    assert len(found[3]) == len(ids) - 1


@pytest.mark.django_db
def test_a_class_filtered_search_runs_alone(fp32, index_built, user):
    searches = microbatch.batcher("search", retrieval._search_rows)
    before = len(searches.recent)
    services.text_search(user=user, text="lemon", top_k=3, class_filter="n07749582")
    assert len(searches.recent) == before
    services.text_search(user=user, text="lemon", top_k=3)
    assert list(searches.recent)[before:] == [BatchRecord(1, waited=False)]


# --- history writes --------------------------------------------------------------------------


ROW_STATEMENT = re.compile(r'^(SELECT|INSERT|UPDATE|DELETE)\b.*?\b(?:FROM|INTO)\s+"?(\w+)', re.S)


def statements(captured) -> list[str]:
    """The statements that read or write rows (not BEGIN, SAVEPOINT, COMMIT): verb and table."""
    found = (ROW_STATEMENT.match(q["sql"].lstrip()) for q in captured.captured_queries)
    return [f"{m[1]} {m[2]}" for m in found if m]


@pytest.mark.django_db
def test_a_search_reads_its_images_once_and_writes_two_rows_statements(fp32, index_built, user, rf):
    services.text_search(user=user, text="lemon", top_k=1)  # models, index and vocabulary read
    with CaptureQueriesContext(connection) as captured:
        query = services.text_search(user=user, text="a red lemon", top_k=6)
        body = render_query(rf.get("/"), query)
    assert statements(captured) == [
        "SELECT search_image",  # the hits' images, with class and dataset, in one query
        "INSERT search_searchquery",
        "INSERT search_searchresult",  # every result in one statement
    ]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5, 6]
    stored = list(query.results.order_by("rank").values_list("image_id", "score"))
    assert [(r["image"]["id"], r["score"]) for r in body["results"]] == stored
