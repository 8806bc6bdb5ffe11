"""The quality gate: a version worse offline than the live one never goes live.

Each test trains on a store of each back-end (SQLite, PostgreSQL) filled with
a simulated shop, whose users have tastes a model can learn and arrive in
turn: the live version is trained on its first events, the candidate after
the later ones arrived, whose users the live version never saw (the only
ones the gate scores).
A deliberately worse model is the same model fitted on shuffled events:
every user's products drawn at random from all the events, so it learns no
taste.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from recsys.models.ease import EASERecommender
from recsys.models.profile import Profile
from recsys.store.artifacts import ModelRegistry
from recsys.store.job_queue import JobQueue, JobState, TrainingJob
from recsys.training import GatePolicy, describe_gate
from recsys.training.gate import VERSIONS_REJECTED, compare, decide, rank_from_history
from recsys.training.jobs import Trainer
from recsys.training.train import TrainingSettings, fit_locally, train_and_publish
from tests.builders import fit_on_shuffled_events, generate_shop_log
from tests.models.test_ease_recency import timed_feedback

ITEMKNN = TrainingSettings(model="itemknn")


@pytest.fixture(scope="module")
def shop_log(tmp_path_factory):
    """A simulated shop: its first 6,750 events, the 2,250 after them, and its catalog."""
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    generate_shop_log(path)
    log = pd.read_csv(path)
    later = path.with_name("later.csv")
    log.iloc[6750:].to_csv(later, index=False)
    return log.iloc[:6750], later, pd.read_csv(path.with_name("shop.products.csv"))


@pytest.fixture
def shop(store, shop_log):
    """An event store of each back-end holding the shop's first events."""
    first, _, catalog = shop_log
    store.bootstrap(catalog, first)
    return store


@pytest.fixture
def events_arrive(shop, shop_log):
    """Record the shop's later events: held-out products the live version never saw."""
    return lambda: shop.import_interactions(shop_log[1])


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models")


def train(shop, registry, fitter=fit_locally, force=False):
    return train_and_publish(shop, registry, ITEMKNN, fitter=fitter, gate=GatePolicy(force=force))


def test_the_first_version_goes_live_without_comparison(shop, registry):
    first = train(shop, registry)
    assert not first.rejected
    assert first.gate["decision"] == "accepted"
    assert first.gate["live"] is None
    assert first.gate["reason"] == "no live version to compare with"
    assert registry.load_latest().metadata.version == first.version


def test_a_retrain_on_unchanged_data_goes_live_with_nothing_new_to_compare_on(shop, registry):
    train(shop, registry)
    again = train(shop, registry)
    assert again.gate["decision"] == "accepted"
    assert again.gate["split"]["test_users"] == 0
    assert "too few to compare" in again.gate["reason"]
    assert registry.load_latest().metadata.version == again.version


def test_a_retrain_of_the_same_model_after_new_events_goes_live(shop, registry, events_arrive):
    live = train(shop, registry)
    events_arrive()
    retrained = train(shop, registry)
    assert retrained.gate["decision"] == "accepted"
    assert retrained.gate["live_version"] == live.version
    assert retrained.gate["split"]["test_users"] >= 20
    # The same model, refitted: equal figures but for the noise of the sample.
    noise = 2 * retrained.gate["standard_error"]
    assert retrained.gate["candidate"] >= retrained.gate["least"] - noise


def test_a_better_version_replaces_a_worse_live_one(shop, registry, events_arrive):
    worse = train(shop, registry, fitter=fit_on_shuffled_events)
    events_arrive()
    better = train(shop, registry)
    assert better.gate["decision"] == "accepted"
    assert better.gate["live_version"] == worse.version
    assert better.gate["candidate"] > better.gate["live"]
    assert registry.load_latest().metadata.version == better.version


def test_a_worse_version_is_rejected_and_the_live_one_keeps_serving(shop, registry, events_arrive):
    live = train(shop, registry)
    events_arrive()
    rejected_before = VERSIONS_REJECTED._value.get()
    worse = train(shop, registry, fitter=fit_on_shuffled_events)

    assert worse.rejected
    assert worse.gate["live_version"] == live.version
    assert worse.gate["candidate"] < worse.gate["least"] <= worse.gate["live"]
    assert VERSIONS_REJECTED._value.get() == rejected_before + 1
    # Not through "latest", not through the refresh poller, not after a restart.
    assert registry.versions() == [live.version]
    assert registry.load_latest().metadata.version == live.version
    assert registry.newer_than(live.version) is None
    restarted = ModelRegistry(registry.root)
    assert restarted.load_latest().metadata.version == live.version


def test_a_rejected_version_is_kept_with_both_figures_and_the_split(shop, registry, events_arrive):
    train(shop, registry)
    events_arrive()
    worse = train(shop, registry, fitter=fit_on_shuffled_events)

    kept = registry.read_metadata(worse.version, rejected=True)
    assert registry.rejected_versions() == [worse.version]
    assert kept.gate == worse.gate
    assert set(kept.gate) >= {"candidate", "live", "live_version", "tolerance", "split"}
    assert kept.gate["tolerance"] == 0.02
    assert kept.gate["split"]["protocol"] == "holdout"
    assert kept.gate["split"]["test_fraction"] == 0.2
    assert registry.last_gate_decision().version == worse.version
    assert describe_gate(kept.gate).startswith("rejected: ndcg@10 ")


def test_force_publishes_a_version_the_gate_would_reject(shop, registry, events_arrive):
    train(shop, registry)
    events_arrive()
    forced = train(shop, registry, fitter=fit_on_shuffled_events, force=True)
    assert forced.gate["decision"] == "forced"
    assert forced.gate["candidate"] < forced.gate["least"]
    assert registry.load_latest().metadata.version == forced.version
    assert registry.rejected_versions() == []


def test_a_version_after_a_rejected_one_takes_the_next_number(shop, registry, events_arrive):
    live = train(shop, registry)
    events_arrive()
    worse = train(shop, registry, fitter=fit_on_shuffled_events)
    forced = train(shop, registry, fitter=fit_on_shuffled_events, force=True)
    numbers = [int(v[1:6]) for v in (live.version, worse.version, forced.version)]
    assert numbers == [1, 2, 3]
    assert registry.newer_than(live.version) == forced.version


def test_a_rejected_version_copied_among_the_published_ones_is_not_served(
    shop, registry, events_arrive
):
    live = train(shop, registry)
    events_arrive()
    worse = train(shop, registry, fitter=fit_on_shuffled_events)
    (registry.rejected_root / worse.version).rename(registry.root / worse.version)

    assert registry.newer_than(live.version) is None
    assert registry.load_latest().metadata.version == live.version


def test_a_rejected_job_is_recorded_with_the_gates_figures(shop, registry, events_arrive):
    queue = JobQueue(shop.engine)
    train(shop, registry)
    events_arrive()
    trainer = Trainer(lambda: train(shop, registry, fitter=fit_on_shuffled_events))
    served = []
    job = TrainingJob(
        id="j" * 32,
        state=JobState.QUEUED,
        trigger="api",
        requested_at=datetime.now(UTC),
    )

    finished = trainer.execute(job, queue.save, trainer.held(), on_published=served.append)

    recorded = queue.get(job.id)
    assert finished.state is JobState.REJECTED
    assert recorded.state is JobState.REJECTED and recorded.state.finished
    assert recorded.version == registry.rejected_versions()[0]
    assert recorded.gate["decision"] == "rejected"
    assert recorded.gate["candidate"] < recorded.gate["live"]
    assert recorded.to_dict()["gate"] == recorded.gate
    assert served == []


@pytest.mark.parametrize(
    ("candidate", "least", "standard_error", "force", "decision", "why"),
    [
        (0.50, 0.49, 0.01, False, "accepted", "at least the live version's minus the tolerance"),
        (0.49, 0.49, 0.00, False, "accepted", "at least the live version's minus the tolerance"),
        (0.48, 0.49, 0.01, False, "accepted", "within the noise of the sample"),
        (0.40, 0.49, 0.01, False, "rejected", "below the live one minus the tolerance"),
        (0.40, 0.49, 0.01, True, "forced", "published by force"),
        (0.50, 0.49, 0.01, True, "accepted", "at least the live version's minus the tolerance"),
    ],
)
def test_the_gates_decision(candidate, least, standard_error, force, decision, why):
    figures = {
        "metric": "ndcg@10",
        "candidate": candidate,
        "least": least,
        "standard_error": standard_error,
    }
    got, reason = decide(figures, GatePolicy(force=force))
    assert got == decision
    assert why in reason


def test_the_bar_is_the_live_figure_minus_the_tolerance_and_the_error_is_paired():
    live = np.array([1.0, 0.5, 0.0, 0.5])
    figures = compare(live - 0.1, live, tolerance=0.02)
    assert figures["live"] == 0.5
    assert figures["least"] == 0.49
    assert figures["candidate"] == 0.4
    assert figures["standard_error"] == 0.0  # every user 0.1 worse: no spread


def test_the_gate_folds_users_in_with_their_products_times_as_serving_does():
    train = timed_feedback()
    model = EASERecommender(l2=50.0, recency=2.0).fit(train)
    users = train["user_id"].unique()[:8].tolist()
    lists = rank_from_history(model, train, users, 5)
    for user in users:
        profile = Profile.from_feedback(train[train["user_id"] == user])
        expected = model.rank_profile(profile, 5, exclude=profile.product_ids)
        assert lists[user].tolist() == expected.product_ids.tolist(), user
    # Without the times, the recent products would not weigh more: other lists.
    untimed = rank_from_history(model, train.drop(columns="timestamp"), users, 5)
    assert any(untimed[u].tolist() != lists[u].tolist() for u in users)
