"""Every metric against examples computed by hand."""

import math

import pytest

from recsys.evaluation import metrics

# One user: ranks 2 and 4 of the top 4 are relevant; 3 relevant items in all.
ONE_USER_LIST = {1: [10, 20, 30, 40]}
ONE_USER_RELEVANT = {1: {20, 40, 50}}

# Three scored users (user 3 has nothing relevant and is left out of means):
# user 1 as above; user 2 has its one relevant item at rank 2; user 4 has no list.
MANY_LISTS = {1: [10, 20, 30, 40], 2: [30, 10], 3: [10, 20]}
MANY_RELEVANT = {1: {20, 40, 50}, 2: {10}, 3: set(), 4: {99}}


def test_rmse_is_the_root_of_the_mean_squared_error():
    # errors 1, -2, 0 -> squares 1, 4, 0 -> mean 5/3
    assert metrics.rmse([4, 1, 3], [3, 3, 3]) == pytest.approx(math.sqrt(5 / 3))


def test_mae_is_the_mean_absolute_error():
    assert metrics.mae([4, 1, 3], [3, 3, 3]) == pytest.approx(1.0)


def test_precision_divides_hits_by_k():
    assert metrics.precision_at_k(ONE_USER_LIST, ONE_USER_RELEVANT, 4) == pytest.approx(2 / 4)


def test_precision_of_a_short_list_still_divides_by_k():
    assert metrics.precision_at_k({1: [20]}, {1: {20}}, 4) == pytest.approx(1 / 4)


def test_precision_counts_only_the_first_k_items():
    assert metrics.precision_at_k(ONE_USER_LIST, ONE_USER_RELEVANT, 2) == pytest.approx(1 / 2)


def test_recall_divides_hits_by_the_number_of_relevant_items():
    assert metrics.recall_at_k(ONE_USER_LIST, ONE_USER_RELEVANT, 4) == pytest.approx(2 / 3)


def test_ndcg_uses_a_log2_discount_and_an_ideal_over_min_k_relevant():
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # 3 relevant items, k = 4
    assert metrics.ndcg_at_k(ONE_USER_LIST, ONE_USER_RELEVANT, 4) == pytest.approx(dcg / ideal)


def test_ndcg_ideal_is_capped_at_k_hits():
    # 3 relevant items but k = 2: a perfect top-2 scores exactly 1.
    assert metrics.ndcg_at_k({1: [20, 40]}, ONE_USER_RELEVANT, 2) == pytest.approx(1.0)


def test_map_averages_precision_at_each_hit_over_min_k_relevant():
    # hits at ranks 2 and 4: precision 1/2 and 2/4, divided by min(4, 3) = 3
    assert metrics.map_at_k(ONE_USER_LIST, ONE_USER_RELEVANT, 4) == pytest.approx(
        (1 / 2 + 2 / 4) / 3
    )


def test_map_of_a_perfect_list_with_more_relevant_than_k_is_one():
    assert metrics.map_at_k({1: [20, 40]}, ONE_USER_RELEVANT, 2) == pytest.approx(1.0)


def test_hit_rate_is_the_share_of_users_with_a_relevant_item_in_the_top_k():
    assert metrics.hit_rate_at_k(MANY_LISTS, MANY_RELEVANT, 4) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        # users 1, 2 and 4 count; user 3 (nothing relevant) is excluded;
        # user 4 (no list) scores 0.
        (metrics.precision_at_k, (2 / 4 + 1 / 4 + 0) / 3),
        (metrics.recall_at_k, (2 / 3 + 1 + 0) / 3),
        (
            metrics.ndcg_at_k,
            (
                (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
                + 1 / math.log2(3)
                + 0
            )
            / 3,
        ),
        (metrics.map_at_k, ((1 / 2 + 2 / 4) / 3 + 1 / 2 + 0) / 3),
    ],
)
def test_ranking_metrics_average_over_users_with_relevant_items(metric, expected):
    assert metric(MANY_LISTS, MANY_RELEVANT, 4) == pytest.approx(expected)


def test_coverage_is_distinct_recommended_products_over_catalog_size():
    # distinct: 10, 20, 30, 40 -> 4 of 8
    assert metrics.catalog_coverage(MANY_LISTS, catalog_size=8) == pytest.approx(4 / 8)


def test_coverage_counts_only_the_first_k_of_each_list():
    # first item of each list: 10, 30, 10 -> 2 of 8
    assert metrics.catalog_coverage(MANY_LISTS, catalog_size=8, k=1) == pytest.approx(2 / 8)


@pytest.mark.parametrize("metric", [metrics.rmse, metrics.mae])
def test_rating_errors_reject_empty_input(metric):
    with pytest.raises(ValueError, match="zero predictions"):
        metric([], [])


@pytest.mark.parametrize("metric", [metrics.rmse, metrics.mae])
def test_rating_errors_reject_inputs_of_different_lengths(metric):
    with pytest.raises(ValueError, match="differ in length: 2 vs 1"):
        metric([1, 2], [1])


RANKING_METRICS = [
    metrics.precision_at_k,
    metrics.recall_at_k,
    metrics.ndcg_at_k,
    metrics.map_at_k,
    metrics.hit_rate_at_k,
]


@pytest.mark.parametrize("metric", RANKING_METRICS)
@pytest.mark.parametrize("relevant", [{}, {1: set()}], ids=["no users", "nothing relevant"])
def test_ranking_metrics_reject_input_without_relevant_items(metric, relevant):
    with pytest.raises(ValueError, match="no user has a relevant item"):
        metric({1: [10]}, relevant, 10)


@pytest.mark.parametrize("metric", RANKING_METRICS)
def test_ranking_metrics_reject_a_cut_off_below_one(metric):
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        metric(ONE_USER_LIST, ONE_USER_RELEVANT, 0)


@pytest.mark.parametrize(
    ("lists", "size", "message"),
    [({}, 5, "at least one recommendation list"), ({1: [1]}, 0, "catalog_size must be")],
)
def test_coverage_rejects_empty_input(lists, size, message):
    with pytest.raises(ValueError, match=message):
        metrics.catalog_coverage(lists, size)


def test_ndcg_by_user_gives_the_values_ndcg_averages():
    by_user = metrics.ndcg_by_user(MANY_LISTS, MANY_RELEVANT, 4)
    # User 3 has nothing relevant; user 4 has no list and scores 0.
    assert set(by_user) == {1, 2, 4}
    assert by_user[2] == pytest.approx(1 / math.log2(3))
    assert by_user[4] == 0.0
    assert sum(by_user.values()) / 3 == pytest.approx(
        metrics.ndcg_at_k(MANY_LISTS, MANY_RELEVANT, 4)
    )
