"""Event types: what an event may say, what each type is worth, and logs that hold them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.eda import eda_report, eda_summary, events_by_type
from recsys.data.events import (
    Event,
    EventIdConflictError,
    InvalidEventError,
    event_from_mapping,
    unique_events,
)
from recsys.data.interactions import EVENT_TYPES, load_interactions
from recsys.data.ratings import EventWeights, derive_ratings
from recsys.errors import DataFileError
from recsys.models.als import ALSRecommender
from recsys.models.ease import EASERecommender
from recsys.models.svd import SVDRecommender
from recsys.store.events import UserHistory

# -- one event, as the API sends it ----------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"purchased": 0}, ("click", None, False)),
        ({"purchased": True}, ("purchase", None, True)),
        ({"type": "view"}, ("view", None, False)),
        ({"type": "cart"}, ("cart", None, False)),
        ({"type": "purchase", "purchased": 1}, ("purchase", None, True)),
        ({"type": "dislike", "purchased": False}, ("dislike", None, False)),
        ({"type": "rating", "value": 5}, ("rating", 5, False)),
        ({"type": "rating", "value": 1}, ("rating", 1, False)),
    ],
)
def test_an_event_is_typed_or_a_click_or_purchase_as_before(row, expected):
    event = event_from_mapping({"user_id": 1, "product_id": 2, **row}, 0)
    assert (event.type, event.value, event.purchased) == expected


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"type": "wishlist"}, "type must be one of view, click, cart, purchase, rating, dislike"),
        ({"type": 3}, "type must be one of"),
        ({"type": None}, "type must be one of"),
        ({}, "missing field(s) ['type (or purchased)']"),
        ({"type": "view", "purchased": 1}, "purchased 1 contradicts type 'view'"),
        ({"type": "purchase", "purchased": 0}, "purchased 0 contradicts type 'purchase'"),
        ({"type": "rating"}, "value must be an integer from 1 to 5 on a rating, got none"),
        ({"type": "rating", "value": 0}, "value must be an integer from 1 to 5 on a rating, got 0"),
        ({"type": "rating", "value": 6}, "got 6"),
        ({"type": "rating", "value": 4.5}, "got 4.5"),
        ({"type": "rating", "value": True}, "got True"),
        ({"type": "rating", "value": "5"}, "got '5'"),
        ({"type": "click", "value": 3}, "value is only for a rating; type 'click' takes none"),
        ({"purchased": 1, "value": 3}, "type 'purchase' takes none"),
        ({"type": "view", "event_id": ""}, "event_id is empty"),
        ({"type": "view", "event_id": "x" * 65}, "event_id is 65 characters long; at most 64"),
        ({"type": "view", "event_id": 7}, "event_id must be a string of 1 to 64 characters"),
        ({"type": "view", "kind": "x"}, "unexpected field(s) ['kind']"),
    ],
)
def test_a_bad_event_is_refused_naming_the_field(row, message):
    with pytest.raises(InvalidEventError) as refused:
        event_from_mapping({"user_id": 1, "product_id": 2, **row}, 3)
    assert str(refused.value).startswith("event 3: ")
    assert message in str(refused.value)


def test_an_event_id_of_64_characters_is_accepted():
    event = event_from_mapping(
        {"user_id": 1, "product_id": 2, "type": "view", "event_id": "é" * 64}, 0
    )
    assert event.event_id == "é" * 64


def test_an_event_id_given_twice_in_a_batch_is_one_event_unless_the_copies_differ():
    same = [
        Event(1, 2, type="cart", event_id="a"),
        Event(3, 4),
        Event(1, 2, type="cart", event_id="a"),
    ]
    assert unique_events(same) == ([0, 1], 1)
    differ = [Event(1, 2, type="cart", event_id="a"), Event(1, 2, type="view", event_id="a")]
    with pytest.raises(EventIdConflictError, match=r"event 1: event_id 'a' already names another"):
        unique_events(differ)


# -- what each type is worth -------------------------------------------------------------


def _typed(rows: list[tuple[int, int, str, int]]) -> pd.DataFrame:
    """A log of (user, product, type, value) rows."""
    frame = pd.DataFrame(rows, columns=["user_id", "product_clicked", "type", "value"])
    frame["purchased"] = (frame["type"] == "purchase").astype(np.int64)
    frame["type"] = pd.Categorical(frame["type"], categories=EVENT_TYPES)
    return frame


def test_each_type_counts_its_weight_and_a_rating_its_stars_times_its_weight():
    log = _typed(
        [
            (1, 1, "view", 0),
            (1, 1, "cart", 0),
            (1, 2, "rating", 4),
            (1, 3, "click", 0),
            (1, 3, "dislike", 0),
            (1, 4, "purchase", 0),
        ]
    )
    feedback = derive_ratings(log, EventWeights())
    assert feedback["engagement"].tolist() == [2.5, 4.0, -4.0, 3.0]
    assert feedback["rating"].tolist() == [2.5, 4.0, 1.0, 3.0]
    assert feedback["clicks"].tolist() == [2, 1, 2, 1]
    assert feedback["purchases"].tolist() == [0, 0, 0, 1]


def test_the_weights_are_configurable_per_type():
    log = _typed([(1, 1, "view", 0), (1, 2, "rating", 2), (1, 3, "dislike", 0)])
    weights = EventWeights.parse("view=2, rating=0.5,dislike=-1")
    assert derive_ratings(log, weights)["engagement"].tolist() == [2.0, 1.0, -1.0]


def test_a_log_without_types_rates_as_it_always_did():
    log = pd.DataFrame({"user_id": [1, 1, 1], "product_clicked": [5, 5, 6], "purchased": [0, 1, 0]})
    assert derive_ratings(log)["rating"].tolist() == [4.0, 1.0]  # click + purchase = 1 + 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wish=1", "'wish=1' is not TYPE=POINTS with a known TYPE"),
        ("click", "'click' is not TYPE=POINTS"),
        ("click=x", "click must be a number, got 'x'"),
        ("click=1,click=2", "click is given twice"),
        ("dislike=1", "dislike must be a finite number <= 0"),
        ("view=-1", "view must be a finite number >= 0"),
        ("cart=inf", "cart must be a finite number >= 0"),
    ],
)
def test_bad_event_weights_are_refused(text, message):
    with pytest.raises(ValueError) as refused:
        EventWeights.parse(text)
    assert message in str(refused.value)


def test_a_model_trained_before_types_keeps_its_click_and_purchase_weights():
    old = EventWeights.from_record({"click_weight": 0.5, "purchase_weight": 1.5})
    assert (old.click, old.purchase) == (0.5, 2.0)
    new = EventWeights.from_record({"event_weights": EventWeights(cart=4).as_dict()})
    assert new == EventWeights(cart=4)


def test_a_history_is_scored_as_training_scored_the_same_events():
    rows = [
        (7, 1, "view", 0),
        (7, 1, "purchase", 0),
        (7, 2, "rating", 5),
        (7, 2, "rating", 3),
        (7, 3, "dislike", 0),
        (7, 3, "click", 0),
    ]
    weights = EventWeights(view=0.25, rating=0.5, dislike=-2)
    feedback = derive_ratings(_typed(rows), weights)
    history = UserHistory.of_events(
        [
            (1, "view", 1, None),
            (1, "purchase", 1, None),
            (2, "rating", 2, 8),
            (3, "dislike", 1, None),
            (3, "click", 1, None),
        ]
    )
    profile = history.profile(weights)
    assert profile.product_ids.tolist() == feedback["product_id"].tolist()
    assert profile.engagement.tolist() == feedback["engagement"].tolist()
    assert history.disliked == frozenset({3}) and history.purchased == frozenset({1})


def test_a_history_counted_from_rows_knows_what_one_made_from_its_fields_knows():
    counted = UserHistory.of_events(
        [
            (3, "dislike", 1, None),
            (1, "purchase", 2, None),
            (3, "click", 1, None),
            (2, "rating", 2, 8),
            (1, "click", 1, None),
        ]
    )
    made = UserHistory(counted.product_ids, counted.tallies, counted.stars)
    assert counted.purchased == made.purchased == frozenset({1})
    assert counted.disliked == made.disliked == frozenset({3})
    assert counted.events == made.events == 7


# -- which models learn from a dislike --------------------------------------------------


def _shop_with_a_dislike() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [
        (u, int(p), "click", 0) for u in range(1, 41) for p in rng.choice(12, 5, replace=False) + 1
    ]
    rows += [(1, 12, "click", 0), (1, 12, "dislike", 0)]
    return derive_ratings(_typed(rows))


def test_svd_learns_a_disliked_pair_as_the_lowest_rating():
    feedback = _shop_with_a_dislike()
    disliked = feedback[(feedback.user_id == 1) & (feedback.product_id == 12)]
    assert disliked["rating"].tolist() == [1.0] and disliked["engagement"].iloc[0] < 0
    assert SVDRecommender.learns_dislikes
    SVDRecommender(n_factors=4, n_epochs=5).fit(feedback)  # the pair is in its training set


@pytest.mark.parametrize("model", [ALSRecommender(factors=4, iterations=3), EASERecommender()])
def test_implicit_models_leave_disliked_pairs_out_of_learning_and_fold_in(model):
    feedback = _shop_with_a_dislike()
    model.fit(feedback)  # ALS refuses a negative confidence: the pair never reaches it
    profile = UserHistory.of_events(
        [(12, "click", 1, 0), (12, "dislike", 1, 0), (3, "click", 1, 0)]
    ).profile(EventWeights())
    items, engagement = model.profile_items(profile)
    assert model.product_ids[items].tolist() == [3] and engagement.tolist() == [1.0]


# -- logs with types --------------------------------------------------------------------


def test_a_typed_log_loads_with_its_types_values_and_event_ids(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "user_id,product_clicked,purchased,type,value,event_id\n"
        "1,2,0,,,a\n"
        "1,3,1,,,b\n"
        "1,4,,rating,4,c\n"
        "2,4,0,dislike,,d\n"
        "2,5,1,purchase,,e\n"
    )
    log = load_interactions(path)
    assert log["type"].tolist() == ["click", "purchase", "rating", "dislike", "purchase"]
    assert log["value"].tolist() == [0, 0, 4, 0, 0]
    assert log["purchased"].tolist() == [0, 1, 0, 0, 1]
    assert log["event_id"].tolist() == ["a", "b", "c", "d", "e"]


def test_the_optional_columns_come_in_any_order(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,product_clicked,purchased,event_id,timestamp,type\n1,2,,x,,view\n")
    assert load_interactions(path)["type"].tolist() == ["view"]


def test_an_empty_event_id_cell_means_the_event_has_none(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,product_clicked,purchased,event_id\n1,2,1,\n1,3,0,e-1\n")
    assert load_interactions(path)["event_id"].tolist() == [None, "e-1"]


@pytest.mark.parametrize(
    ("header", "line", "problem"),
    [
        ("purchased,type", "1,2,0,wish", "line 2: type must be one of view, click, cart"),
        ("purchased,type", "1,2,1,view", "line 2: purchased 1 contradicts type 'view'"),
        ("purchased,type", "1,2,,", "line 2: purchased is missing"),
        (
            "purchased,type,value",
            "1,2,,rating,6",
            "line 2: value must be 1 to 5 on a rating, got '6'",
        ),
        (
            "purchased,type,value",
            "1,2,,rating,",
            "line 2: value must be 1 to 5 on a rating, got ''",
        ),
        ("purchased,type", "1,2,,rating", "line 2: value must be 1 to 5 on a rating"),
        ("purchased,type,value", "1,2,,cart,3", "line 2: value is only for a rating; type 'cart'"),
        ("purchased,value", "1,2,1,3", "line 2: value is only for a rating; type 'click'"),
        ("purchased,event_id", "1,2,1," + "x" * 65, "line 2: event_id is 65 characters long"),
        ("purchased,type,type", "1,2,1,,", "line 1: repeated column(s) ['type']"),
        ("purchased,kind", "1,2,1,x", "line 1: unexpected column(s) ['kind']"),
    ],
)
def test_a_bad_typed_line_is_named_by_file_and_line(tmp_path, header, line, problem):
    path = tmp_path / "log.csv"
    path.write_text(f"user_id,product_clicked,{header}\n{line}\n")
    with pytest.raises(DataFileError) as refused:
        load_interactions(path)
    assert f"{path}, {problem}" in str(refused.value)


# -- the simulator and the EDA know the types ----------------------------------------


def test_the_simulator_emits_views_and_carts_only_when_asked_and_the_same_clicks():
    from recsys.data.simulate import SimulationConfig, simulate_shop

    plain = simulate_shop(SimulationConfig(users=30, products=10)).interactions
    assert "type" not in plain.columns  # the bundled log's shape
    typed = simulate_shop(SimulationConfig(users=30, products=10, view_rate=2, cart_rate=0.5))
    log = typed.interactions
    counts = events_by_type(log)
    assert counts["view"] > 0 and counts["cart"] > 0
    assert counts["click"] + counts["purchase"] == len(plain)
    clicks = log[log["type"].isin(["click", "purchase"])].reset_index(drop=True)
    assert clicks[["user_id", "product_clicked", "purchased"]].equals(plain)


def test_the_large_simulator_adds_views_and_carts_to_exactly_the_clicks_asked_for():
    from recsys.data.simulate import SimulationConfig
    from recsys.data.simulate_large import simulate_large

    config = SimulationConfig(users=200, products=30, view_rate=1, cart_rate=0.3)
    log = simulate_large(config, events=2_000).interactions
    counts = events_by_type(log)
    assert counts["click"] + counts["purchase"] == 2_000
    assert counts["view"] > 0 and counts["cart"] > 0


def test_a_typed_log_written_and_read_back_keeps_its_types(tmp_path):
    from recsys.data.interactions import write_interactions

    log = _typed([(1, 2, "view", 0), (1, 2, "rating", 4), (2, 3, "purchase", 0)])
    path = tmp_path / "typed.csv"
    write_interactions(log, path)
    assert path.read_text().splitlines()[:3] == [
        "user_id,product_clicked,purchased,type,value",
        "1,2,0,view,",
        "1,2,0,rating,4",
    ]
    back = load_interactions(path)
    assert back["type"].tolist() == ["view", "rating", "purchase"]
    assert back["value"].tolist() == [0, 4, 0]


def test_the_eda_counts_events_by_type():
    log = _typed(
        [(1, 2, "view", 0), (1, 2, "view", 0), (1, 3, "dislike", 0), (2, 3, "purchase", 0)]
    )
    assert events_by_type(log) == {
        "view": 2,
        "click": 0,
        "cart": 0,
        "purchase": 1,
        "rating": 0,
        "dislike": 1,
    }
    assert eda_summary(log)["events_by_type"]["dislike"] == 1
    assert "Events by type: view 2, click 0, cart 0, purchase 1, rating 0, dislike 1" in eda_report(
        log
    )
