"""Stratified sampling: even over classes, reproducible by seed."""

from __future__ import annotations

from collections import Counter

from evaluation.sampling import stratified_sample

POOLS = {"a": list(range(0, 10)), "b": list(range(10, 20)), "c": list(range(20, 30))}


def class_of(image_id: int) -> str:
    return "abc"[image_id // 10]


def test_counts_per_class_differ_by_at_most_one():
    sample = stratified_sample(POOLS, 7, seed=0)
    counts = Counter(class_of(i) for i in sample)
    assert len(sample) == len(set(sample)) == 7
    assert sorted(counts.values()) == [2, 2, 3]


def test_divisible_sample_is_exactly_even():
    counts = Counter(class_of(i) for i in stratified_sample(POOLS, 9, seed=3))
    assert counts == {"a": 3, "b": 3, "c": 3}


def test_same_seed_same_sample_whatever_the_input_order():
    shuffled = {k: list(reversed(v)) for k, v in reversed(POOLS.items())}
    assert stratified_sample(POOLS, 12, seed=42) == stratified_sample(shuffled, 12, seed=42)


def test_another_seed_another_sample():
    samples = {tuple(stratified_sample(POOLS, 6, seed=s)) for s in range(5)}
    assert len(samples) > 1


def test_a_small_class_gives_what_it_has_and_the_rest_fill_up():
    sample = stratified_sample({"small": [1], "big": list(range(100, 110))}, 6, seed=0)
    assert 1 in sample
    assert len(sample) == 6


def test_none_or_more_than_there_is_takes_everything():
    everything = list(range(30))
    assert stratified_sample(POOLS, None, seed=0) == everything
    assert stratified_sample(POOLS, 1000, seed=0) == everything


def test_empty_pool():
    assert stratified_sample({}, 5, seed=0) == []
