"""The quality gate: a version worse offline than the live one never goes live.

Each test trains on a store of each back-end (SQLite, PostgreSQL) filled with
a simulated shop, whose users have tastes a model can learn. A deliberately
worse model is the same model fitted on shuffled events: every user's products
drawn at random from all the events, so it learns no taste.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.store.artifacts import ModelRegistry
from recsys.store.job_queue import JobQueue, JobState, TrainingJob
from recsys.training import GatePolicy, describe_gate
from recsys.training.gate import VERSIONS_REJECTED
from recsys.training.jobs import Trainer
from recsys.training.train import TrainingSettings, fit_locally, train_and_publish
from tests.builders import generate_small_log

EASE = TrainingSettings(model="ease")


def fit_on_shuffled_events(name: str, params, feedback: pd.DataFrame):
    """Fit the model on the events with their products shuffled: a model that learned no taste."""
    shuffled = feedback.assign(
        product_id=np.random.default_rng(7).permutation(feedback["product_id"].to_numpy())
    )
    pairs = shuffled.groupby(["user_id", "product_id"], as_index=False).agg(
        clicks=("clicks", "sum"), engagement=("engagement", "sum"), rating=("rating", "max")
    )
    return fit_locally(name, params, pairs)


@pytest.fixture(scope="module")
def shop_log(tmp_path_factory):
    """A simulated shop's log and catalog: 200 users, 30 products, 3,000 events."""
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    generate_small_log(path)
    return pd.read_csv(path), pd.read_csv(path.with_name("shop.products.csv"))


@pytest.fixture
def shop(store, shop_log):
    """An event store of each back-end holding the shop's events."""
    log, catalog = shop_log
    store.bootstrap(catalog, log)
    return store


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models")


def train(shop, registry, fitter=fit_locally, force=False):
    return train_and_publish(shop, registry, EASE, fitter=fitter, gate=GatePolicy(force=force))


def test_the_first_version_goes_live_without_comparison(shop, registry):
    first = train(shop, registry)
    assert not first.rejected
    assert first.gate["decision"] == "accepted"
    assert first.gate["live"] is None
    assert first.gate["reason"] == "no live version to compare with"
    assert registry.load_latest().metadata.version == first.version


def test_a_better_version_replaces_a_worse_live_one(shop, registry):
    worse = train(shop, registry, fitter=fit_on_shuffled_events)
    better = train(shop, registry)
    assert better.gate["decision"] == "accepted"
    assert better.gate["live_version"] == worse.version
    assert better.gate["candidate"] > better.gate["live"]
    assert registry.load_latest().metadata.version == better.version


def test_a_worse_version_is_rejected_and_the_live_one_keeps_serving(shop, registry):
    live = train(shop, registry)
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


def test_a_rejected_version_is_kept_with_both_figures_and_the_split(shop, registry):
    train(shop, registry)
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


def test_force_publishes_a_version_the_gate_would_reject(shop, registry):
    train(shop, registry)
    forced = train(shop, registry, fitter=fit_on_shuffled_events, force=True)
    assert forced.gate["decision"] == "forced"
    assert forced.gate["candidate"] < forced.gate["least"]
    assert registry.load_latest().metadata.version == forced.version
    assert registry.rejected_versions() == []


def test_a_version_after_a_rejected_one_takes_the_next_number(shop, registry):
    live = train(shop, registry)
    worse = train(shop, registry, fitter=fit_on_shuffled_events)
    forced = train(shop, registry, fitter=fit_on_shuffled_events, force=True)
    numbers = [int(v[1:6]) for v in (live.version, worse.version, forced.version)]
    assert numbers == [1, 2, 3]
    assert registry.newer_than(live.version) == forced.version


def test_a_rejected_version_copied_among_the_published_ones_is_not_served(shop, registry):
    live = train(shop, registry)
    worse = train(shop, registry, fitter=fit_on_shuffled_events)
    (registry.rejected_root / worse.version).rename(registry.root / worse.version)

    assert registry.newer_than(live.version) is None
    assert registry.load_latest().metadata.version == live.version


def test_a_rejected_job_is_recorded_with_the_gates_figures(shop, registry):
    queue = JobQueue(shop.engine)
    train(shop, registry)
    trainer = Trainer(lambda: train(shop, registry, fitter=fit_on_shuffled_events))
    served = []
    job = TrainingJob(
        id="j" * 32,
        state=JobState.QUEUED,
        trigger="api",
        requested_at=pd.Timestamp.now("UTC").to_pydatetime(),
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
