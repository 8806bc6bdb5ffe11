"""Protocols: no leakage, cold counts, determinism, and the report of evaluate."""

import inspect
import itertools

import numpy as np
import pandas as pd
import pytest
from surprise import Dataset as SurpriseDataset
from surprise import Reader
from surprise.model_selection import KFold

from recsys.data.loaders import Dataset
from recsys.evaluation.evaluate import evaluate, rank_models, training_rows
from recsys.evaluation.report import format_report
from recsys.evaluation.splits import (
    Split,
    global_time_split,
    global_time_windows,
    holdout_split,
    kfold_splits,
    make_splits,
    products_by_user,
    time_split,
    validation_split,
    validation_splits,
)
from recsys.models.als import ALSRecommender
from recsys.models.popularity import PopularityRecommender


def random_feedback(n_users=30, n_items=25, density=0.4, seed=0):
    """Return a feedback frame of random pairs, ratings 1-5 and distinct timestamps."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    n = len(users)
    ratings = rng.integers(1, 6, n).astype(float)
    return pd.DataFrame(
        {
            "user_id": users + 1,
            "product_id": items + 1,
            "clicks": np.ones(n, dtype=np.int64),
            "engagement": ratings,
            "rating": ratings,
            "timestamp": rng.permutation(n) * 10,
        }
    )


def as_dataset(feedback, name="synthetic"):
    return Dataset(
        name=name,
        feedback=feedback,
        explicit_ratings=True,
        rating_scale=(1.0, 5.0),
        source_format="simulated",
    )


def pairs(frame):
    return set(zip(frame["user_id"], frame["product_id"], strict=True))


FEEDBACK = random_feedback()


@pytest.mark.parametrize(
    "split",
    [
        holdout_split(FEEDBACK, 0.2, seed=3),
        time_split(FEEDBACK, leave_last=2),
        *kfold_splits(FEEDBACK, folds=4, seed=3),
    ],
    ids=["holdout", "time", "fold0", "fold1", "fold2", "fold3"],
)
def test_no_test_pair_is_in_training_and_no_row_is_lost(split):
    assert not pairs(split.train) & pairs(split.test)
    assert len(split.train) + len(split.test) == len(FEEDBACK)
    assert pairs(split.train) | pairs(split.test) == pairs(FEEDBACK)


def test_holdout_takes_a_rounded_share_of_each_user_and_keeps_one_row_in_training():
    feedback = pd.concat([FEEDBACK, FEEDBACK.iloc[[0]].assign(user_id=999)])  # one-row user
    split = holdout_split(feedback, 0.2, seed=1)
    rows = feedback["user_id"].value_counts()
    held_out = split.test["user_id"].value_counts().reindex(rows.index, fill_value=0)
    expected = np.minimum(np.maximum(np.rint(0.2 * rows), 1), rows - 1)
    assert held_out.tolist() == expected.astype(int).tolist()
    assert 999 in set(split.train["user_id"]) and 999 not in set(split.test["user_id"])


def test_holdout_is_the_same_for_the_same_seed_and_differs_for_another():
    first, again = holdout_split(FEEDBACK, seed=5), holdout_split(FEEDBACK, seed=5)
    other = holdout_split(FEEDBACK, seed=6)
    assert pairs(first.test) == pairs(again.test)
    assert pairs(first.test) != pairs(other.test)


def test_kfold_test_sets_partition_the_rows():
    folds = list(kfold_splits(FEEDBACK, folds=5, seed=0))
    test_index = np.concatenate([fold.test.index.to_numpy() for fold in folds])
    assert sorted(test_index.tolist()) == FEEDBACK.index.tolist()
    assert [len(f.test) for f in folds] == [
        len(FEEDBACK) // 5 + (i < len(FEEDBACK) % 5) for i in range(5)
    ]


def test_kfold_matches_surprise_kfold_row_for_row():
    data = SurpriseDataset.load_from_df(
        FEEDBACK[["user_id", "product_id", "rating"]], Reader(rating_scale=(1, 5))
    )
    ours = list(kfold_splits(FEEDBACK, folds=3, seed=11))
    theirs = list(KFold(n_splits=3, random_state=11).split(data))
    for split, (trainset, testset) in zip(ours, theirs, strict=True):
        assert [(u, i) for u, i, _ in testset] == list(
            zip(split.test["user_id"], split.test["product_id"], strict=True)
        )
        raw_train = [
            (trainset.to_raw_uid(u), trainset.to_raw_iid(i)) for u, i, _ in trainset.all_ratings()
        ]
        assert sorted(raw_train) == sorted(pairs(split.train))


def test_time_split_holds_out_each_users_latest_rows():
    split = time_split(FEEDBACK, leave_last=2)
    for user, test_rows in split.test.groupby("user_id"):
        train_rows = split.train[split.train["user_id"] == user]
        assert test_rows["timestamp"].min() > train_rows["timestamp"].max()
        assert len(test_rows) == min(2, len(test_rows) + len(train_rows) - 1)


def test_time_split_breaks_timestamp_ties_by_the_larger_product_id():
    feedback = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "product_id": [5, 7, 6],
            "clicks": 1,
            "engagement": 1.0,
            "rating": 4.0,
            "timestamp": [10, 20, 20],
        }
    )
    assert time_split(feedback, 1).test["product_id"].tolist() == [7]


def test_time_split_needs_timestamps():
    with pytest.raises(ValueError, match="needs timestamps"):
        time_split(FEEDBACK.drop(columns="timestamp"))


def test_time_split_orders_datetime_timestamps_like_numbers():
    # Interactions files carry ISO-8601 datetimes, MovieLens carries seconds.
    as_datetimes = FEEDBACK.assign(timestamp=pd.to_datetime(FEEDBACK["timestamp"], unit="s"))
    assert pairs(time_split(as_datetimes, 2).test) == pairs(time_split(FEEDBACK, 2).test)


def test_time_split_refuses_rows_without_a_timestamp():
    feedback = FEEDBACK.assign(timestamp=pd.to_datetime(FEEDBACK["timestamp"], unit="s"))
    feedback.loc[feedback.index[[3, 5]], "timestamp"] = pd.NaT
    with pytest.raises(ValueError, match="needs a timestamp on every row; 2 of"):
        time_split(feedback)


@pytest.mark.parametrize(
    ("protocol", "options", "message"),
    [
        ("bootstrap", {}, "unknown protocol 'bootstrap'; expected one of holdout, kfold, time"),
        ("kfold", {"folds": 1}, "folds must be from 2"),
        ("holdout", {"test_fraction": 1.0}, "test_fraction must be between 0 and 1"),
        ("time", {"leave_last": 0}, "leave_last must be at least 1"),
    ],
)
def test_bad_protocol_settings_are_refused(protocol, options, message):
    with pytest.raises(ValueError, match=message):
        make_splits(FEEDBACK, protocol, **options)


def test_cold_users_items_and_rows_of_a_split_are_counted():
    train = FEEDBACK[FEEDBACK["user_id"] <= 10]
    test = pd.concat(
        [
            FEEDBACK[FEEDBACK["user_id"] == 11].head(3),  # cold user, warm items
            train.head(1).assign(product_id=500),  # warm user, cold item
        ]
    )
    counts = Split(train=train, test=test).cold_counts()
    assert counts["cold_test_users"] == 1
    assert counts["cold_test_items"] == 1
    assert counts["cold_test_rows"] == 4


def leave_last_feedback():
    """Users 1-3 saw 1 then 2 and will like 3; user 4 saw 3 and will like 4."""
    rows = [
        (1, 1, 1), (1, 2, 2), (1, 3, 3),
        (2, 1, 1), (2, 2, 2), (2, 3, 3),
        (3, 1, 1), (3, 2, 2), (3, 3, 3),
        (4, 3, 1), (4, 4, 2),
    ]  # fmt: skip
    user, product, stamp = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "user_id": user,
            "product_id": product,
            "clicks": 1,
            "engagement": 5.0,
            "rating": 5.0,
            "timestamp": stamp,
        }
    )


def test_evaluate_excludes_each_users_training_items_from_the_ranking():
    # Popularity in training: 1 and 2 (3 users each), then 3 (user 4 only).
    # With training items excluded, users 1-3 get product 3 first: 3 hits of 4.
    report = evaluate(
        {"popular": PopularityRecommender}, as_dataset(leave_last_feedback()), "time", k=1
    )
    assert report["models"]["popular"]["hit_rate@1"] == pytest.approx(3 / 4)
    assert report["protocol"]["splits"][0]["cold_test_items"] == 1  # product 4


def test_evaluate_reports_dataset_protocol_and_every_metric_per_model():
    report = evaluate(
        {"popular": PopularityRecommender, "als": lambda: ALSRecommender(factors=4)},
        as_dataset(FEEDBACK),
        "holdout",
        k=5,
        threshold=4,
        seed=1,
    )
    assert report["dataset"]["rows"] == len(FEEDBACK)
    assert report["protocol"]["name"] == "holdout"
    assert report["protocol"]["relevance_threshold"] == 4
    for scores in report["models"].values():
        for metric in ("precision@5", "recall@5", "ndcg@5", "map@5", "hit_rate@5", "coverage"):
            assert 0 <= scores[metric] <= 1
        assert scores["fit_seconds"] > 0
        assert "rmse" not in scores  # neither model predicts ratings


def test_evaluate_gives_the_same_figures_for_the_same_seed():
    def run():
        report = evaluate({"als": lambda: ALSRecommender(factors=4)}, as_dataset(FEEDBACK), seed=2)
        return {k: v for k, v in report["models"]["als"].items() if not k.endswith("seconds")}

    assert run() == run()


def test_kfold_report_averages_folds_and_counts_each_fold():
    report = evaluate(
        {"popular": PopularityRecommender}, as_dataset(FEEDBACK), "kfold", folds=3, seed=0
    )
    assert report["protocol"]["folds"] == 3
    assert len(report["protocol"]["splits"]) == 3
    assert sum(s["test_rows"] for s in report["protocol"]["splits"]) == len(FEEDBACK)


def test_rank_models_puts_the_lowest_error_or_highest_score_first():
    report = {"models": {"a": {"rmse": 0.9, "ndcg@10": 0.3}, "b": {"rmse": 0.8, "ndcg@10": 0.2}}}
    assert [name for name, _ in rank_models(report, "rmse")] == ["b", "a"]
    assert [name for name, _ in rank_models(report, "ndcg@10")] == ["a", "b"]


def test_format_report_has_one_row_per_model_and_names_the_cold_counts():
    report = evaluate({"popular": PopularityRecommender}, as_dataset(leave_last_feedback()), "time")
    table = format_report(report)
    assert "cold: 0 users, 1 products, 1 rows" in table
    assert [line.split()[0] for line in table.splitlines()[3:4]] == ["popular"]
    assert table.splitlines()[4].startswith("by ndcg@10, best first: popular")
    assert table.splitlines()[5].startswith("relevance: a test row is relevant when")


@pytest.mark.parametrize("window", [0, 1, 2])
def test_a_global_time_split_trains_strictly_before_it_tests(window):
    split = global_time_split(FEEDBACK, 0.1, window)
    assert split.train["timestamp"].max() < split.test["timestamp"].min()
    assert set(split.test["user_id"]) <= set(split.train["user_id"])
    assert not split.test.empty


def test_the_latest_global_window_is_the_last_tenth_of_the_log_minus_unknown_users():
    feedback = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 1, 3, 1, 2, 3, 1],
            "product_id": [1, 2, 1, 3, 4, 5, 6, 7, 8, 9],
            "rating": [5.0] * 10,
            "timestamp": range(10),
        }
    )
    split = global_time_split(feedback, 0.3)
    # The last 3 rows (times 7, 8, 9); user 3's row at time 8 has a training row (time 5).
    assert split.train["timestamp"].tolist() == list(range(7))
    assert split.test["timestamp"].tolist() == [7, 8, 9]
    earlier = global_time_split(feedback, 0.3, window=1)
    assert earlier.train["timestamp"].tolist() == [0, 1, 2, 3]
    # User 3's first row (time 5) is in the window, with no training row: dropped, counted.
    assert earlier.test["timestamp"].tolist() == [4, 6]
    assert earlier.cold_counts()["test_rows_of_users_without_training"] == 1


@pytest.mark.parametrize(
    ("fraction", "min_train", "windows"),
    [(0.1, 0.5, 5), (0.1, 0.9, 1), (0.2, 0.5, 2), (0.05, 0.7, 6)],
)
def test_global_time_windows_roll_back_while_training_keeps_its_share(fraction, min_train, windows):
    assert global_time_windows(fraction, min_train) == windows
    # The last window counted trains on the share (to a row), one more would not.
    last = global_time_split(FEEDBACK, fraction, windows - 1)
    assert len(last.train) >= min_train * len(FEEDBACK) - 1
    assert 1 - fraction * (windows + 1) < min_train


@pytest.mark.parametrize("min_train", [0.0, 0.95])
def test_global_time_windows_refuse_a_share_that_leaves_no_window(min_train):
    with pytest.raises(ValueError, match="min_train_share"):
        global_time_windows(0.1, min_train)


def test_a_global_cut_never_splits_rows_of_the_same_time():
    feedback = random_feedback().assign(timestamp=lambda f: f["timestamp"] // 200)
    split = global_time_split(feedback, 0.1)
    assert split.train["timestamp"].max() < split.test["timestamp"].min()


@pytest.mark.parametrize(
    ("fraction", "window", "message"),
    [
        (0.0, 0, "between 0 and 1"),
        (1.0, 0, "between 0 and 1"),
        (0.5, 1, "leave no row to train on"),
        (0.1, -1, "at least 0"),
    ],
)
def test_bad_global_time_windows_are_refused(fraction, window, message):
    with pytest.raises(ValueError, match=message):
        global_time_split(FEEDBACK, fraction, window)


def test_a_global_time_split_needs_timestamps():
    with pytest.raises(ValueError, match="needs timestamps"):
        global_time_split(FEEDBACK.drop(columns="timestamp"))


def test_rolled_back_per_user_windows_test_each_users_earlier_rows():
    latest = time_split(FEEDBACK, leave_last=2)
    earlier = time_split(FEEDBACK, leave_last=2, window=1)
    for user, rows in FEEDBACK.groupby("user_id"):
        newest_first = rows.sort_values(["timestamp", "product_id"], ascending=False)
        # A user left without a training row (4 rows or fewer) is not tested.
        expected = set(newest_first["product_id"].iloc[2:4]) if len(rows) > 4 else set()
        assert set(earlier.test.loc[earlier.test["user_id"] == user, "product_id"]) == expected
        assert set(latest.test.loc[latest.test["user_id"] == user, "product_id"]) == set(
            newest_first["product_id"].iloc[:2]
        )
    # The latest window is out of that fold altogether, train and test.
    assert pairs(earlier.train) | pairs(earlier.test) <= pairs(FEEDBACK) - pairs(latest.test)


@pytest.mark.parametrize("protocol", ["holdout", "kfold", "time", "time-global"])
def test_validation_is_carved_from_training_rows_only(protocol):
    outer = make_splits(FEEDBACK, protocol, seed=2)[0]
    validation = validation_split(outer.train, protocol, seed=2)
    assert pairs(validation.train) | pairs(validation.test) <= pairs(outer.train)
    assert not pairs(validation.test) & pairs(outer.test)
    assert not validation.test.empty and not pairs(validation.train) & pairs(validation.test)
    assert set(inspect.signature(validation_split).parameters) == {
        "train",
        "protocol",
        "seed",
        "fraction",
        "leave_last",
    }


@pytest.mark.parametrize("protocol", ["holdout", "kfold", "time"])
def test_protocols_other_than_the_global_cut_validate_on_one_split(protocol):
    outer = make_splits(FEEDBACK, protocol, seed=2)[0]
    (only,) = validation_splits(outer.train, protocol, seed=2)
    expected = validation_split(outer.train, protocol, seed=2)
    assert pairs(only.train) == pairs(expected.train) and pairs(only.test) == pairs(expected.test)


def test_the_global_cut_validates_on_three_windows_rolled_back_inside_training():
    outer = make_splits(FEEDBACK, "time-global", seed=2)[0]
    windows = validation_splits(outer.train, "time-global", seed=2)
    assert [window.facts["window"] for window in windows] == [0, 1, 2]
    for window in windows:
        assert pairs(window.train) | pairs(window.test) <= pairs(outer.train)
        assert window.train["timestamp"].max() < window.test["timestamp"].min()
    # Each window ends where the next one back begins.
    for later, earlier in itertools.pairwise(windows):
        assert earlier.test["timestamp"].max() < later.test["timestamp"].min()
        assert pairs(earlier.train) < pairs(later.train)


def test_a_log_too_short_for_three_windows_validates_on_those_it_has():
    few = FEEDBACK.sort_values("timestamp").iloc[:12]
    windows = validation_splits(few, "time-global", fraction=0.4)
    assert len(windows) == 1 and not windows[0].test.empty


@pytest.mark.parametrize(
    ("protocol", "seeds_or_windows"),
    [("holdout", [{"seed": 4}, {"seed": 5}, {"seed": 6}]), ("time-global", [0, 1, 2])],
)
def test_repeats_make_one_split_per_seed_or_time_window(protocol, seeds_or_windows):
    splits = make_splits(FEEDBACK, protocol, seed=4, repeats=3)
    assert len(splits) == 3
    if protocol == "holdout":
        assert [split.facts for split in splits] == seeds_or_windows
    else:
        assert [split.facts["window"] for split in splits] == seeds_or_windows


def test_repeated_evaluation_reports_a_mean_and_a_95_percent_interval():
    report = evaluate(
        {"popular": PopularityRecommender}, as_dataset(FEEDBACK), "holdout", k=5, repeats=3
    )
    per_seed = [
        evaluate({"popular": PopularityRecommender}, as_dataset(FEEDBACK), "holdout", k=5, seed=s)
        for s in range(3)
    ]
    values = [r["models"]["popular"]["ndcg@5"] for r in per_seed]
    assert report["models"]["popular"]["ndcg@5"] == pytest.approx(np.mean(values))
    expected = 4.302652729911275 * np.std(values, ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert report["intervals"]["popular"]["ndcg@5"] == pytest.approx(expected)
    assert report["protocol"]["repeats"] == 3
    assert "+- " in format_report(report)


def test_the_report_states_the_relevance_rule_candidates_and_training_input():
    report = evaluate(
        {"popular": PopularityRecommender},
        as_dataset(FEEDBACK),
        k=5,
        threshold=3.5,
        train_min_rating=4,
    )
    protocol = report["protocol"]
    assert protocol["relevance"] == "a test row is relevant when its rating is at least 3.5"
    assert protocol["candidates"].startswith("every product of the training rows except")
    assert protocol["training_input"] == "training rows rated at least 4"


def test_fitting_on_high_ratings_only_keeps_low_rated_products_out_of_the_list():
    feedback = random_feedback(seed=3)
    split = holdout_split(feedback, 0.2, seed=0)
    fitted = PopularityRecommender().fit(training_rows(split.train, 4.0))
    low = split.train[split.train["rating"] < 4]
    user = int(low["user_id"].iloc[0])
    lists = fitted.recommend([user], 25, exclude=products_by_user(split.train)).lists
    assert not set(lists[user].product_ids.tolist()) & set(products_by_user(low)[user])
    assert (training_rows(split.train, 4.0)["rating"] >= 4).all()
