"""Micro-batching: calls that arrive together in one process run as one batch.

Each query embeds and searches alone otherwise, and most of a lone CLIP text call is per-call
overhead (~17 ms for under 1 ms of arithmetic); a batch of queries pays it once. A
`MicroBatcher` owns a queue and one daemon thread (per process: it starts again after a fork,
so every gunicorn worker has its own). `submit(item)` blocks its caller until the item's batch
ran and returns the item's own result; `run(items)` returns one result per item, in order. An
exception `run` raises reaches every caller of that batch, as the same type.

A lone query never waits: the thread runs what it holds at once, and waits up to `max_wait_s`
(counted from the first item's arrival) for more only while queries are queuing -- items were
already waiting, or the previous batch had more than one. The queue is bounded; a full one
answers `SearchQueueFull` (a 503 with a message, like any overload).

`batcher(name, run)` is the process's batcher of that name, made on first use from
TINYRAG_BATCH_MAX and TINYRAG_BATCH_WAIT_MS; None when TINYRAG_BATCH_MAX is 1 (batching off:
callers take the direct path).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.translation import gettext as _

from search.errors import Unavailable

T = TypeVar("T")
R = TypeVar("R")

QUEUE_BATCHES = 4  # the queue holds this many full batches waiting; then it refuses
RECENT_BATCHES = 256  # how many batches `recent` remembers (sizes and waits, for tests/ops)
BATCH_SETTINGS = frozenset({"TINYRAG_BATCH_MAX", "TINYRAG_BATCH_WAIT_MS"})


class SearchQueueFull(Unavailable):
    """More queries wait in this process than it lets queue: the caller tries again soon."""

    code = "busy"
    retry_after = 1
    for_users = None  # the message itself is for everyone: nothing for an operator to fix


@dataclass(frozen=True)
class BatchRecord:
    size: int  # items run together
    waited: bool  # whether the batch waited for more items before it ran


class _Pending:
    """One submitted item until its batch ran: the result or the error, and the event."""

    __slots__ = ("arrived", "done", "error", "item", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()  # put by close(): the thread runs what was queued before it, then ends
_live_batchers: weakref.WeakSet[MicroBatcher] = weakref.WeakSet()


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait_s: float,
        name: str,
        queue_size: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative; got {max_wait_s}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.name = name
        self.queue_size = queue_size or max_batch * QUEUE_BATCHES
        self.recent: deque[BatchRecord] = deque(maxlen=RECENT_BATCHES)
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread serves _queue
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._previous_size = 0
        _live_batchers.add(self)

    def __repr__(self) -> str:
        return f"MicroBatcher({self.name!r}, max_batch={self.max_batch})"

    @property
    def thread(self) -> threading.Thread | None:
        """The thread that runs this process's batches (None before the first submit)."""
        return self._thread if self._pid == os.getpid() else None

    def waiting(self) -> int:
        """Items queued and not yet taken into a batch (approximate, as queue sizes are)."""
        q = self._queue
        return q.qsize() if q is not None and self._pid == os.getpid() else 0

    def submit(self, item: T) -> R:
        """`run([item, ...])`'s result for `item`, once the batch that took it ran."""
        pending = _Pending(item)
        with self._lock:
            closed = self._closed
            if not closed:
                q = self._started_queue()
                if q.qsize() >= self.queue_size:
                    raise SearchQueueFull(
                        _("The server is busy with other searches. Try again in a moment.")
                    )
                q.put_nowait(pending)
        if closed:  # replaced (the settings changed): no thread serves it any more
            return self.run([item])[0]
        pending.done.wait()
        if pending.error is not None:
            raise _for_caller(pending.error)
        return pending.result

    def close(self) -> None:
        """Run what is queued, then end the thread; later submits run directly."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._queue is not None:  # (after a fork no thread reads it: harmless)
                self._queue.put(_STOP)

    # -- the thread ----------------------------------------------------------------------------

    def _started_queue(self) -> queue.Queue:
        """This process's queue, with its thread started (again, after a fork). Under _lock."""
        pid = os.getpid()
        if self._pid != pid:
            # unbounded itself: submit() keeps it to queue_size (puts happen under _lock), so
            # that close() can always queue its _STOP
            self._queue = queue.Queue()
            self._thread = threading.Thread(
                target=self._serve, args=(self._queue,), name=f"microbatch-{self.name}", daemon=True
            )
            self._thread.start()
            self._previous_size = 0
            self._pid = pid
        return self._queue

    def _serve(self, q: queue.Queue) -> None:
        stopping = False
        while not stopping:
            first = q.get()
            if first is _STOP:
                stopping, batch = True, []
            else:
                batch = [first]
            stopping = self._take_waiting(q, batch) or stopping
            waited = False
            queuing = len(batch) > 1 or self._previous_size > 1
            if batch and not stopping and queuing and self.max_wait_s > 0:
                waited, stopping = self._wait_for_more(q, batch)
            if batch:
                self._run_batch(batch, waited)
            while stopping and not q.empty():  # what came before _STOP still runs
                rest: list[_Pending] = []
                self._take_waiting(q, rest)
                if rest:
                    self._run_batch(rest, waited=False)

    def _take_waiting(self, q: queue.Queue, batch: list[_Pending]) -> bool:
        """Adds what is queued now, up to max_batch, without waiting; True if it met _STOP."""
        while len(batch) < self.max_batch:
            try:
                item = q.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _wait_for_more(self, q: queue.Queue, batch: list[_Pending]) -> tuple[bool, bool]:
        """Adds items arriving before the first one's max_wait_s is up, up to max_batch;
        (whether it waited at all, whether it met _STOP)."""
        deadline = batch[0].arrived + self.max_wait_s
        waited = False
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            waited = True
            try:
                item = q.get(timeout=left)
            except queue.Empty:
                break
            if item is _STOP:
                return waited, True
            batch.append(item)
        return waited, False

    def _run_batch(self, batch: list[_Pending], waited: bool) -> None:
        self._previous_size = len(batch)
        self.recent.append(BatchRecord(len(batch), waited))
        try:
            results = list(self.run([pending.item for pending in batch]))
            if len(results) != len(batch):
                raise RuntimeError(
                    f"batcher {self.name!r}: run returned {len(results)} results "
                    f"for {len(batch)} items"
                )
        except BaseException as exc:  # every caller gets it; the thread lives on
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending.done.set()


def _for_caller(error: BaseException) -> BaseException:
    """A copy of `error` for one caller (each raises its own, so that concurrent raises do not
    splice their tracebacks into one object), carrying the batch thread's traceback."""
    try:
        clone = type(error).__new__(type(error), *error.args)
        clone.__dict__.update(getattr(error, "__dict__", {}))
    except Exception:  # an exception type that cannot be rebuilt: the original then
        return error
    clone.__cause__, clone.__context__ = error.__cause__, error.__context__
    clone.__suppress_context__ = error.__suppress_context__
    return clone.with_traceback(error.__traceback__)


def _after_fork_in_child() -> None:
    # a lock held by a thread of the parent at fork time would never be released in the child
    for batcher_ in list(_live_batchers):
        batcher_._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- the process's batchers, from the settings --------------------------------------------------

_batchers: dict[str, MicroBatcher] = {}
_batchers_lock = threading.Lock()


def batcher(name: str, run: Callable[[list[T]], Sequence[R]]) -> MicroBatcher[T, R] | None:
    """The process's batcher `name` running `run` (made on first use from the settings), or
    None when TINYRAG_BATCH_MAX is 1: batching is off, and the caller runs alone."""
    found = _batchers.get(name)
    if found is not None:
        return found
    max_batch, wait_ms = settings.TINYRAG_BATCH_MAX, settings.TINYRAG_BATCH_WAIT_MS
    if max_batch < 1 or wait_ms < 0:
        raise ImproperlyConfigured(
            f"TINYRAG_BATCH_MAX={max_batch}, TINYRAG_BATCH_WAIT_MS={wait_ms}: the batch size is "
            "at least 1 (1 = batching off) and the wait at least 0 ms."
        )
    if max_batch == 1:
        return None
    with _batchers_lock:
        if name not in _batchers:
            _batchers[name] = MicroBatcher(
                run, max_batch=max_batch, max_wait_s=wait_ms / 1000, name=name
            )
        return _batchers[name]


def close_batchers() -> None:
    """Close and forget every batcher; the next `batcher()` makes them from the settings."""
    with _batchers_lock:
        closing = list(_batchers.values())
        _batchers.clear()
    for closed in closing:
        closed.close()


@receiver(setting_changed, dispatch_uid="tinyrag-microbatch-settings")
def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting in BATCH_SETTINGS:  # tests (override_settings) turn batching off and on
        close_batchers()
