"""Benchmark: what fold-in costs an uncached answer, at 5,000 products.

A simulated shop (``simulate_large``: 5,000 products, 10,000 users, 200,000
clicks) is stored in SQLite and each model trained on it. For a seeded sample
of users, an uncached /recommend answer is made in process the way the
service makes it: the user's history read from the store, then the answering
pipeline (candidates -> filters -> describe) with caching off. The pipeline
runs twice on the same requests: folding the user in from the history (the
service now), and from the user's training-time row (as before fold-in; the
path the service keeps for a store outage). CPU time per answer, each mode
timed in alternating rounds, best round kept.

Target: for EASE, ALS and item-kNN, a folded-in answer costs at most 1.3x a
training-time-row answer (the history read included in both). Exits 1 if a
target fails.

Usage: python bench/bench_fold_in.py [--users 400] [--rounds 5] [--models ease,als,itemknn]
       [--record FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.interactions import write_interactions  # noqa: E402
from recsys.data.ratings import derive_ratings  # noqa: E402
from recsys.data.simulate import SimulationConfig  # noqa: E402
from recsys.data.simulate_large import simulate_large  # noqa: E402
from recsys.models import MODELS  # noqa: E402
from recsys.models.popularity import PopularityRecommender  # noqa: E402
from recsys.online.answer_cache import NoAnswerCache  # noqa: E402
from recsys.online.live_model import ServingModel, catalog_names  # noqa: E402
from recsys.online.pipeline import Pipeline  # noqa: E402
from recsys.online.rankers import PERSONAL_OR_POPULAR  # noqa: E402
from recsys.online.service import LiveModel, RecommendRequest  # noqa: E402
from recsys.store.artifacts import ArtifactMetadata  # noqa: E402
from recsys.store.events import EventStore  # noqa: E402
from recsys.store.migrate import upgrade_to_head  # noqa: E402

PRODUCTS, USERS, EVENTS = 5_000, 10_000, 200_000
MAX_RATIO = 1.3


def build_store(directory: Path):
    """Return a SQLite store holding the simulated shop, and its feedback frame."""
    config = SimulationConfig(users=USERS, products=PRODUCTS, seed=7)
    shop = simulate_large(config, EVENTS)
    store = EventStore.from_url(f"sqlite:///{directory / 'events.db'}")
    upgrade_to_head(store.engine)
    store.upsert_products(shop.catalog)
    log = directory / "interactions.csv"
    write_interactions(shop.interactions, log)
    store.import_interactions(log)
    return store, shop.catalog, derive_ratings(shop.interactions)


def version_of(model, popularity, catalog) -> ServingModel:
    metadata = ArtifactMetadata(
        version="v00001-bench", model_type=model.name, params={}, trained_at="", data_fingerprint=""
    )
    return ServingModel(model, popularity, catalog_names(catalog), metadata)


def cpu_per_answer(store, pipeline, version, users, folded: bool) -> float:
    """Return CPU seconds per answer: the history read and the pipeline."""
    cache = NoAnswerCache(store)
    started = time.process_time()
    for user in users:
        history = store.user_history(user)
        if not folded:  # the training-time row: what the pipeline ranks when it cannot read
            history = dataclasses.replace(history, unavailable=True)
        pipeline.answer(version, RecommendRequest(user, 10), history, None, cache)
    return (time.process_time() - started) / len(users)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=400, help="users sampled for requests")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="ease,als,itemknn")
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_fold_in.py", record=args.record)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-fold-in-") as tmp:
        store, catalog, feedback = build_store(Path(tmp))
        popularity = PopularityRecommender().fit(feedback)
        rng = np.random.default_rng(0)
        users = rng.choice(feedback["user_id"].unique(), size=args.users, replace=False).tolist()
        print(
            f"{PRODUCTS:,} products, {USERS:,} users, {EVENTS:,} clicks (SQLite); "
            f"{args.users} users' uncached answers, best of {args.rounds} rounds, CPU ms per answer"
        )
        print(f"  {'model':<8}{'training row':>14}{'fold-in':>10}{'ratio':>8}")
        for name in args.models.split(","):
            model = MODELS[name]().fit(feedback)
            version = version_of(model, popularity, catalog)
            live = LiveModel()
            live.swap(version)
            pipeline = Pipeline("bench", live, PERSONAL_OR_POPULAR)
            best = {True: float("inf"), False: float("inf")}
            for _ in range(args.rounds):
                for folded in (False, True):
                    spent = cpu_per_answer(store, pipeline, version, users, folded)
                    best[folded] = min(best[folded], spent)
            ratio = best[True] / best[False]
            print(f"  {name:<8}{best[False] * 1e3:>14.2f}{best[True] * 1e3:>10.2f}{ratio:>7.2f}x")
            verdicts.check(
                f"{name}: a folded-in answer costs <= {MAX_RATIO}x a training-time-row answer",
                f"{ratio:.2f}x",
                ratio <= MAX_RATIO,
            )
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
