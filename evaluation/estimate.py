"""What a run will cost before it starts: how many query images, text queries and generations
it makes, and about how long that takes. Pure functions: counts and rates in, an estimate out
(the selectors read the counts from the catalog and the rates from earlier runs).

The rates are seconds per item that finished runs measured on this server (their `timings`:
the median of the latest RATE_HISTORY runs that measured each one); where no run has, a
documented default stands in, and the estimate says which is which.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.utils.translation import gettext, ngettext

from evaluation.config import EvaluationConfig

# Seconds per item when no finished run has measured it yet: rough figures for the default
# models, between a GPU and a laptop CPU.
DEFAULT_SECONDS = {
    "query_image": 0.02,  # CLIP ViT-B/32: ~2 ms per image on a GPU, 20-50 ms on a CPU
    "text_query": 0.02,  # a class name through the text tower, then one index search
    "generation": 20.0,  # Qwen2-VL-2B, ~100 new tokens: ~3 s on a GPU, 20-60 s on a CPU
}
RATE_HISTORY = 5  # the median over this many of the latest runs that measured a rate
LONG_RUN_SECONDS = 15 * 60  # above it the form asks to confirm before starting


@dataclass(frozen=True)
class Rate:
    """Seconds per item, and the runs that measured it (none: the default)."""

    seconds: float
    runs: tuple[int, ...] = ()

    @property
    def measured(self) -> bool:
        return bool(self.runs)

    @property
    def seconds_text(self) -> str:
        """3 significant digits, as people write them: 0.02, 1.5, 20, 1,234."""
        return f"{self.seconds:,.0f}" if self.seconds >= 100 else f"{self.seconds:.3g}"


@dataclass(frozen=True)
class Workload:
    """What a run would do."""

    query_images: int  # embedded and searched with (image), or classified (zero-shot)
    text_queries: int  # class names embedded (and searched with, for text)
    generations: int  # descriptions written: RAG images x contexts
    described_images: int = 0
    contexts: int = 0  # ways each image is described
    rag_skipped: bool = False  # "all" on a server whose descriptions are off


@dataclass(frozen=True)
class Part:
    """One line of an estimate: `count` items at `rate`."""

    kind: str  # query_image | text_query | generation
    count: int
    rate: Rate

    @property
    def seconds(self) -> float:
        return self.count * self.rate.seconds


@dataclass(frozen=True)
class Estimate:
    workload: Workload
    parts: tuple[Part, ...]

    @property
    def seconds(self) -> float:
        return sum(part.seconds for part in self.parts)

    @property
    def long(self) -> bool:
        return self.seconds > LONG_RUN_SECONDS

    @property
    def duration(self) -> str:
        return duration_in_words(self.seconds)


def workload(config: EvaluationConfig, *, pool: int, classes: int, describer: bool) -> Workload:
    """The work of `config` on a split of `pool` labelled images and `classes` classes, as
    the engine (evaluation.measure) does it: a sample of None is the whole split; the query
    images are shared by image and zeroshot, the class names by text and zeroshot; rag is
    skipped by "all" when descriptions are off."""
    modes = set(config.modes)
    rag_skipped = "rag" in modes and config.mode == "all" and not describer
    if rag_skipped:
        modes.discard("rag")
    query_images = 0
    if modes & {"image", "zeroshot"}:
        query_images = pool if config.sample is None else min(config.sample, pool)
    described = min(config.resolved_rag_sample, pool) if "rag" in modes else 0
    return Workload(
        query_images=query_images,
        text_queries=classes if modes & {"text", "zeroshot"} else 0,
        generations=described * len(config.rag_contexts),
        described_images=described,
        contexts=len(config.rag_contexts) if described else 0,
        rag_skipped=rag_skipped,
    )


def estimate(work: Workload, rates: Mapping[str, Rate]) -> Estimate:
    """The time of `work` at `rates` (a kind without a rate: its default)."""
    counts = (
        ("query_image", work.query_images),
        ("text_query", work.text_queries),
        ("generation", work.generations),
    )
    return Estimate(
        workload=work,
        parts=tuple(
            Part(kind, count, rates.get(kind) or Rate(DEFAULT_SECONDS[kind]))
            for kind, count in counts
            if count
        ),
    )


def measured_rates(timings: Iterable[tuple[int, Mapping[str, float]]]) -> dict[str, Rate]:
    """Rates from runs' timings, newest first as (run id, timings): per kind, the median of
    the latest RATE_HISTORY runs that measured it."""
    seen: dict[str, list[tuple[int, float]]] = {kind: [] for kind in DEFAULT_SECONDS}
    for run_id, measured in timings:
        for kind, seconds in measured.items():
            if kind in seen and len(seen[kind]) < RATE_HISTORY and seconds >= 0:
                seen[kind].append((run_id, float(seconds)))
    return {
        kind: Rate(statistics.median(s for _, s in found), tuple(run_id for run_id, _ in found))
        for kind, found in seen.items()
        if found
    }


def duration_in_words(seconds: float) -> str:
    """About how long, as people say it: "under a minute", "about 4 minutes", "about 2 hours
    10 minutes"."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return gettext("under a minute")
    if minutes < 60:
        return ngettext("about %(n)s minute", "about %(n)s minutes", minutes) % {"n": minutes}
    hours, rest = divmod(minutes, 60)
    if rest == 0 or hours >= 10:
        return ngettext("about %(n)s hour", "about %(n)s hours", hours) % {"n": f"{hours:,}"}
    hours_text = ngettext("%(n)s hour", "%(n)s hours", hours) % {"n": f"{hours:,}"}
    return ngettext("about %(hours)s %(n)s minute", "about %(hours)s %(n)s minutes", rest) % {
        "hours": hours_text,
        "n": rest,
    }
