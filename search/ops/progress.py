"""Progress bars: the management commands' (tqdm on stderr, silent at --verbosity 0) with
their default number of file-reading workers, and background jobs' (JobProgress: a bar that is
the job's heartbeat and records its progress on the job's row)."""

from __future__ import annotations

import functools
import io
import os
import sys

from tqdm import tqdm

# Threads or processes reading image files: enough to keep one CPU model fed, few enough
# for a laptop.
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def progress_factory(verbosity: int):
    """A tqdm constructor that honours the command's verbosity."""
    return functools.partial(tqdm, disable=verbosity < 1, dynamic_ncols=True)


class JobStopped(Exception):
    """Raised in a job's worker by a progress heartbeat that was refused: the job's row is
    gone, or its kind asked it to stop (search.ops.jobs.heartbeat)."""


class JobProgress(tqdm):
    """A tqdm bar that records its step, count and total on a job's row (at most once a
    second) for the job's page to show, and doubles as the job's heartbeat: a heartbeat
    refused raises the bar's `stopped_error` (a JobStopped) from its next update, its close,
    or its creation. With `timings`, it adds its items and seconds to timings[step] when it
    closes. Prints (on stderr) only with `console`.

    tqdm displays while holding its process-wide write lock (without a try/finally), so the
    refusal is only noted in `display` and raised once tqdm has let go of the lock: raised
    inside, it would leave the lock held and hang every other progress bar of the process."""

    monitor_interval = 0  # no monitor thread: every write happens on the job's own thread
    stopped_error: type[JobStopped] = JobStopped

    def __init__(
        self,
        *args,
        kind,  # search.ops.jobs.JobKind (imported there: it imports the task backends)
        job_id: int,
        console: bool = False,
        timings: dict | None = None,
        **kwargs,
    ):
        self.kind = kind
        self.job_id = job_id
        self.console = console
        self.timings = timings
        self.stopped = False  # set before tqdm's first display, which happens in __init__
        self.raised = False
        kwargs.update(mininterval=1.0, file=sys.stderr if console else io.StringIO())
        super().__init__(*args, dynamic_ncols=console, **kwargs)
        if self.stopped:
            self.close()  # raises

    def display(self, msg=None, pos=None):
        from search.ops import jobs

        if not self.stopped and not jobs.heartbeat(
            self.kind,
            self.job_id,
            progress={"step": self.desc, "done": self.n, "total": self.total},
        ):
            self.stopped = True  # raised by the caller, outside tqdm's lock
        return super().display(msg, pos) if self.console else True

    def _raise_if_stopped(self) -> None:
        if self.stopped and not self.raised:
            self.raised = True  # once: the close() that unwinds the bar displays again
            raise self.stopped_error(self.job_id)

    def update(self, n=1):
        displayed = super().update(n)
        self._raise_if_stopped()
        return displayed

    def close(self):
        started = getattr(self, "start_t", None)
        if self.timings is not None and not self.disable and started is not None:
            items, seconds = self.timings.get(self.desc, (0, 0.0))
            self.timings[self.desc] = (items + self.n, seconds + self._time() - started)
        super().close()
        self._raise_if_stopped()

    def __del__(self):
        self.raised = True  # never from the garbage collector
        super().__del__()
