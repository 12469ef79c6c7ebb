"""The cost of a run before it starts: its work, the rates it is priced at, and the time."""

from __future__ import annotations

import pytest

from evaluation import estimate
from evaluation.config import EvaluationConfig
from evaluation.estimate import Rate, Workload
from evaluation.services import item_seconds


def work(**config) -> Workload:
    """The work of a config on a split of 12 labelled images in 4 classes, descriptions on."""
    return estimate.workload(EvaluationConfig(**config), pool=12, classes=4, describer=True)


def test_image_retrieval_queries_the_sample_or_the_whole_split():
    assert work(mode="image", sample=5) == Workload(query_images=5, text_queries=0, generations=0)
    assert work(mode="image", sample=None).query_images == 12  # empty: the whole split
    assert work(mode="image", sample=1000).query_images == 12  # no more than the split has


def test_text_retrieval_makes_one_query_per_class():
    assert work(mode="text", sample=5) == Workload(query_images=0, text_queries=4, generations=0)


def test_zero_shot_needs_the_query_images_and_the_class_names():
    assert work(mode="zeroshot", sample=5) == Workload(
        query_images=5, text_queries=4, generations=0
    )


def test_rag_makes_one_generation_per_image_and_context():
    both = work(mode="rag", rag_sample=3)
    assert (both.generations, both.described_images, both.contexts) == (6, 3, 2)
    one = work(mode="rag", rag_sample=3, rag_contexts=("none",))
    assert (one.generations, one.contexts) == (3, 1)
    assert work(mode="rag", rag_sample=50).generations == 24  # 12 images in the split, x2


def test_all_without_a_describer_skips_rag():
    config = EvaluationConfig(mode="all", sample=5, rag_sample=3)
    off = estimate.workload(config, pool=12, classes=4, describer=False)
    on = estimate.workload(config, pool=12, classes=4, describer=True)
    assert (off.generations, off.rag_skipped) == (0, True)
    assert (on.query_images, on.text_queries, on.generations, on.rag_skipped) == (5, 4, 6, False)


def test_the_estimate_prices_each_item_at_its_rate():
    rates = {"query_image": Rate(0.02, (7,)), "text_query": Rate(0.05, (7,))}
    result = estimate.estimate(Workload(query_images=1000, text_queries=200, generations=20), rates)
    # 1000 x 0.02 + 200 x 0.05 + 20 x the default 20 s = 20 + 10 + 400
    assert result.seconds == pytest.approx(430.0)
    assert [(p.kind, p.count, p.rate.measured) for p in result.parts] == [
        ("query_image", 1000, True),
        ("text_query", 200, True),
        ("generation", 20, False),
    ]
    assert result.duration == "about 7 minutes"
    assert not result.long


def test_an_estimate_over_a_quarter_of_an_hour_is_long():
    rates = {"generation": Rate(10.0, (1,))}
    assert not estimate.estimate(Workload(0, 0, 90), rates).long  # 900 s: exactly 15 min
    assert estimate.estimate(Workload(0, 0, 91), rates).long


def test_nothing_to_do_costs_nothing():
    result = estimate.estimate(Workload(0, 0, 0), {})
    assert (result.parts, result.seconds, result.duration) == ((), 0, "under a minute")


def test_measured_rates_are_the_median_of_the_latest_runs_that_measured_each():
    runs = [  # newest first
        (9, {"generation": 4.0}),
        (8, {"generation": 2.0, "query_image": 0.01}),
        (7, {"query_image": 0.03}),
        (6, {"generation": 9.0}),
        (5, {"generation": 1.0}),
        (4, {"generation": 3.0}),
        (3, {"generation": 100.0}),  # sixth to measure generation: beyond the history
        (2, {"unknown": 1.0}),
    ]
    rates = estimate.measured_rates(runs)
    assert rates["generation"] == Rate(3.0, (9, 8, 6, 5, 4))  # median of 4, 2, 9, 1, 3
    assert rates["query_image"] == Rate(0.02, (8, 7))  # median of 0.01, 0.03
    assert "text_query" not in rates
    assert set(rates) == {"generation", "query_image"}


def test_item_seconds_from_a_runs_progress_bars():
    steps = {
        "embed query images": (10, 1.0),
        "search by image": (10, 0.5),
        "embed class names": (4, 0.2),
        "describe images": (4, 8.0),
    }
    rates = item_seconds(steps, contexts=2)
    # 1.0/10 + 0.5/10; 0.2/4 (no search step: zero-shot); 8.0 / (4 images x 2 contexts)
    assert rates == pytest.approx({"query_image": 0.15, "text_query": 0.05, "generation": 1.0})
    assert item_seconds({"search by image": (0, 0.0)}, contexts=2) == {}


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (5, "under a minute"),
        (60, "about 1 minute"),
        (149, "about 2 minutes"),
        (59 * 60, "about 59 minutes"),
        (3600, "about 1 hour"),
        (3600 + 60, "about 1 hour 1 minute"),
        (2 * 3600 + 10 * 60, "about 2 hours 10 minutes"),
        (12 * 3600 + 10 * 60, "about 12 hours"),
    ],
)
def test_durations_in_words(seconds, words):
    assert estimate.duration_in_words(seconds) == words
