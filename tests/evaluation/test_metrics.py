"""The metric functions against examples computed by hand."""

from __future__ import annotations

import pytest

from evaluation import metrics

T, F = True, False

# Three queries, computed by hand:
#   q1 [F, T, F, T]: first hit at rank 2; hits in the top 5: 2
#   q2 [T, T, F]:    first hit at rank 1; hits in the top 5: 2 (only 3 results)
#   q3 [F, F, F]:    no hit
QUERIES = [[F, T, F, T], [T, T, F], [F, F, F]]


def test_recall_at_k_is_the_share_of_queries_with_a_hit_in_the_top_k():
    assert metrics.recall_at_k(QUERIES, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(QUERIES, 2) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(QUERIES, 5) == pytest.approx(2 / 3)


def test_precision_at_k_divides_by_k_even_when_fewer_results_came_back():
    # top 1: q1 a miss -> 0, q2 a hit -> 1, q3 -> 0
    assert metrics.mean_precision_at_k(QUERIES, 1) == pytest.approx(1 / 3)
    # top 5: q1 2/5, q2 2/5 (3 results, 2 hits), q3 0
    assert metrics.mean_precision_at_k(QUERIES, 5) == pytest.approx((2 / 5 + 2 / 5 + 0) / 3)


def test_mrr_is_the_mean_reciprocal_rank_of_the_first_hit_zero_without_one():
    assert metrics.mean_reciprocal_rank(QUERIES, 10) == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_mrr_ignores_a_first_hit_beyond_the_cutoff():
    late = [[F, F, T]]
    assert metrics.mean_reciprocal_rank(late, 2) == 0.0
    assert metrics.mean_reciprocal_rank(late, 3) == pytest.approx(1 / 3)


def test_k_larger_than_the_results():
    one_hit = [[T]]
    assert metrics.recall_at_k(one_hit, 10) == 1.0
    assert metrics.mean_precision_at_k(one_hit, 10) == pytest.approx(0.1)
    assert metrics.mean_reciprocal_rank(one_hit, 10) == 1.0


def test_a_query_with_no_results_scores_zero():
    assert metrics.recall_at_k([[]], 5) == 0.0
    assert metrics.mean_precision_at_k([[]], 5) == 0.0
    assert metrics.mean_reciprocal_rank([[]], 5) == 0.0
    assert metrics.first_hit_rank([]) is None


def test_no_hit_at_all():
    assert metrics.retrieval_summary([[F, F], [F]], [1, 5]) == {
        "queries": 2,
        "recall@1": 0.0,
        "precision@1": 0.0,
        "recall@5": 0.0,
        "precision@5": 0.0,
        "mrr": 0.0,
    }


def test_empty_input_measures_nothing():
    assert metrics.recall_at_k([], 5) is None
    assert metrics.mean_precision_at_k([], 5) is None
    assert metrics.mean_reciprocal_rank([], 5) is None
    assert metrics.top_k_accuracy([], 1) is None
    assert metrics.share([]) is None
    assert metrics.label_inclusion_rate([], []) is None
    assert metrics.retrieval_summary([], [1]) == {
        "queries": 0,
        "recall@1": None,
        "precision@1": None,
        "mrr": None,
    }


def test_summary_sorts_and_deduplicates_ks_and_cuts_mrr_at_the_largest():
    summary = metrics.retrieval_summary([[F, F, T]], [2, 1, 2])
    assert list(summary) == ["queries", "recall@1", "precision@1", "recall@2", "precision@2", "mrr"]
    assert summary["mrr"] == 0.0  # the hit is at rank 3 > 2


def test_a_tie_between_a_hit_and_a_miss_counts_the_miss_first():
    # FAISS happened to return the hit first; with equal scores it earns no credit for that
    assert metrics.recall_at_k([[T, F]], 1, scores=[[0.9, 0.9]]) == 0.0
    assert metrics.mean_reciprocal_rank([[T, F]], 10, scores=[[0.9, 0.9]]) == pytest.approx(0.5)
    # distinct scores: the order stands
    assert metrics.recall_at_k([[T, F]], 1, scores=[[0.9, 0.8]]) == 1.0


def test_a_tie_at_the_cutoff():
    # ranks: hit 0.9, then a hit and a miss tied at 0.7 -> the miss takes rank 2
    relevant, scores = [T, T, F], [0.9, 0.7, 0.7]
    assert metrics.precision_at_k(relevant, 2, scores) == pytest.approx(1 / 2)
    assert metrics.precision_at_k(relevant, 3, scores) == pytest.approx(2 / 3)
    assert metrics.precision_at_k(relevant, 2) == 1.0  # without scores: the given order


def test_ties_among_hits_change_nothing():
    assert metrics.precision_at_k([T, T], 2, [0.5, 0.5]) == 1.0
    assert metrics.first_hit_rank([T, T], [0.5, 0.5]) == 1


def test_invalid_input_is_refused():
    with pytest.raises(ValueError, match="positive"):
        metrics.recall_at_k(QUERIES, 0)
    with pytest.raises(ValueError, match="scores"):
        metrics.precision_at_k([T, F], 1, [0.3])
    with pytest.raises(ValueError, match="score lists"):
        metrics.recall_at_k(QUERIES, 1, scores=[[0.1]])
    with pytest.raises(ValueError, match="at least one k"):
        metrics.retrieval_summary(QUERIES, [])


def test_true_class_rank_counts_the_classes_scored_higher():
    assert metrics.true_class_rank([0.1, 0.5, 0.3], 1) == 1
    assert metrics.true_class_rank([0.1, 0.5, 0.3], 2) == 2
    assert metrics.true_class_rank([0.1, 0.5, 0.3], 0) == 3


def test_true_class_rank_puts_a_tied_class_ahead():
    assert metrics.true_class_rank([0.5, 0.5, 0.1], 0) == 2
    assert metrics.true_class_rank([0.5, 0.5, 0.1], 1) == 2
    assert metrics.true_class_rank([0.2, 0.2, 0.2], 2) == 3  # a constant model is always wrong
    with pytest.raises(ValueError, match="not among"):
        metrics.true_class_rank([0.1], 3)


def test_top_k_accuracy():
    assert metrics.top_k_accuracy([1, 2, 6], 1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy([1, 2, 6], 5) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy([1, 2, 6], 6) == 1.0
