"""Novelty, intra-list diversity and popularity bias on lists whose answer is known."""

import math

import numpy as np
import pytest

from recsys.evaluation import metrics

COUNTS = {1: 8, 2: 4, 3: 2, 4: 1}  # of 8 training users


def test_novelty_is_the_mean_self_information_of_recommended_items():
    lists = {10: [1, 2], 11: [3, 4]}
    expected = np.mean([-math.log2(8 / 8), -math.log2(4 / 8), -math.log2(2 / 8), -math.log2(1 / 8)])
    assert metrics.novelty(lists, COUNTS, n_users=8, k=10) == pytest.approx(expected)


def test_novelty_counts_only_the_first_k_items():
    assert metrics.novelty({10: [1, 4]}, COUNTS, n_users=8, k=1) == 0.0


def test_popularity_bias_is_the_mean_popularity_percentile():
    # Percentiles among 4 items with distinct counts: 1 -> 1, 2 -> 2/3, 3 -> 1/3, 4 -> 0.
    assert metrics.popularity_bias({10: [1, 2]}, COUNTS, k=10) == pytest.approx((1 + 2 / 3) / 2)


def test_popularity_bias_gives_tied_items_their_mid_rank():
    counts = {1: 5, 2: 5, 3: 1}
    # Item 1: one item below, one equal other: (1 + 0.5) / 2.
    assert metrics.popularity_bias({10: [1]}, counts, k=10) == pytest.approx(0.75)


def test_diversity_by_category_is_the_share_of_pairs_in_different_categories():
    categories = {1: "Books", 2: "Books", 3: "Home"}
    # Pairs: (1,2) same, (1,3) and (2,3) different -> 2/3.
    assert metrics.intra_list_diversity({10: [1, 2, 3]}, 10, categories) == pytest.approx(2 / 3)


def test_diversity_by_vectors_is_the_mean_cosine_distance():
    ids = np.array([1, 2, 3])
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    lists = {10: [1, 2], 11: [1, 3]}
    # List 10: identical vectors (distance 0); list 11: orthogonal (distance 1).
    assert metrics.intra_list_diversity(lists, 10, item_ids=ids, item_vectors=vectors) == 0.5


def test_diversity_without_categories_or_vectors_is_an_error():
    with pytest.raises(ValueError, match="needs categories or item_ids"):
        metrics.intra_list_diversity({10: [1, 2]}, 10)


def test_metrics_of_no_recommended_item_are_undefined():
    with pytest.raises(ValueError, match="no recommended item"):
        metrics.novelty({10: []}, COUNTS, n_users=8, k=10)
