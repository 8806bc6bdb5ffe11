"""Benchmark: new products get seen through exploration, at a small cost in conversions.

A simulated shop (``recsys.cli.ab_simulation``: the simulator's users, who
click and buy by their true taste) is served by the real runtime on SQLite,
once with ``RECSYS_EXPLORATION=0.1`` and once with 0, over the same sequence
of requests: random users ask for lists of 10, react, and their events go
back through the ingestion path every 100 requests (no retrain happens: the
model version stays the one trained at the start). Half-way, 5 new products
arrive in the catalog as ``PUT /products`` brings them, one per category,
cheaper than their category's median: users who like the category like them.
Impressions are synced with the store every ``--sync-every`` requests, as
each process's sync thread does every ``EXPLORATION_SYNC_SECONDS``.

Targets (PASS or FAIL; exits 1 if one fails):

- each new product is shown at least 100 times within the 2,000 requests
  after it appears (with exploration 0 it is never shown before a retrain);
- exploration costs at most 3% of the conversions of exploration 0, as the
  simulator's expected purchases (the sum over shown products of
  P(click) x P(purchase), free of the draws' noise); the sampled purchases
  are printed too.

Usage: python bench/bench_exploration.py [--requests 10000] [--users 500]
       [--products 40] [--sync-every 200] [--record FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.cli.ab_simulation import (  # noqa: E402
    CLICK_SCALE,
    EXAMINE_DECAY,
    MEAN_PRICE_SENSITIVITY,
    AbSimulation,
)
from recsys.data.events import Event  # noqa: E402
from recsys.data.simulate import CATEGORIES, CATEGORY_NOUNS  # noqa: E402
from recsys.online import RecommendRequest  # noqa: E402

LIST_LENGTH = 10
EVENT_BATCH = 100
WINDOW = 2000  # requests after the new products appear
MIN_IMPRESSIONS = 100
MAX_COST = 0.03
NEW_PRICE_FACTOR = 0.7  # of the category's median price
SEED = 7


@dataclass
class Run:
    """What one run of the shop saw."""

    expected_purchases: float = 0.0
    expected_before: float = 0.0  # before the new products appeared
    sampled_purchases: int = 0
    explored_slots: int = 0
    slots: int = 0
    new_impressions: dict[int, int] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)
    seconds: float = 0.0


def new_products(catalog: pd.DataFrame) -> pd.DataFrame:
    """Return one new, cheaper-than-median product per category, ids after the catalog's."""
    first = int(catalog["product_id"].max()) + 1
    medians = catalog.groupby("category")["price"].median()
    return pd.DataFrame(
        {
            "product_id": np.arange(first, first + len(CATEGORIES), dtype=np.int64),
            "name": [f"Coral {CATEGORY_NOUNS[c][0]}" for c in CATEGORIES],
            "category": list(CATEGORIES),
            "price": [round(float(medians[c]) * NEW_PRICE_FACTOR, 2) for c in CATEGORIES],
        }
    )


def true_taste(simulation: AbSimulation, catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return affinity and purchase logits (users x products by id) of the simulator's users."""
    shop = simulation.shop
    category_index = {c: i for i, c in enumerate(CATEGORIES)}
    columns = catalog["category"].map(category_index).to_numpy()
    affinity = shop.taste[:, columns] / shop.taste.max(axis=1, keepdims=True)
    # Prices against the original catalog's median, as the simulator's users see them.
    median = np.median(shop.catalog["price"].to_numpy())
    log_price = np.log(catalog["price"].to_numpy() / median)
    logit = -4.0 + 3.5 * affinity - 1.2 * MEAN_PRICE_SENSITIVITY * log_price[None, :]
    return affinity, logit


def run_shop(folder: Path, args: argparse.Namespace, share: float) -> Run:
    """Serve ``args.requests`` simulated requests with an exploration share; return the figures."""
    simulation = AbSimulation(
        folder, args.users, SEED, args.products, overrides={"EXPLORATION": share}
    )
    runtime = simulation.runtime
    try:
        arrivals = new_products(simulation.shop.catalog)
        catalog = pd.concat([simulation.shop.catalog, arrivals], ignore_index=True)
        affinity, logit = true_taste(simulation, catalog)
        strength = simulation.config.taste_strength
        rng = np.random.default_rng(SEED)
        users = rng.integers(1, args.users + 1, args.requests)
        behaviour = np.random.default_rng(SEED + 1)
        half = args.requests // 2
        run = Run(new_impressions={int(p): 0 for p in arrivals["product_id"]})
        events: list[Event] = []
        started = time.perf_counter()
        for index, user_id in enumerate(users.tolist()):
            if index == half:
                runtime.store.upsert_products(arrivals)  # what PUT /products does
                runtime.service.refresh_names()
            answer = runtime.service.recommend(RecommendRequest(user_id, LIST_LENGTH))
            run.versions.add(answer.model_version)
            for position, item in enumerate(answer.recommendations):
                row, column = user_id - 1, item.product_id - 1
                liking = (affinity[row, column] + 0.05) ** strength
                click = EXAMINE_DECAY**position * CLICK_SCALE * liking
                buy = 1.0 / (1.0 + np.exp(-logit[row, column]))
                run.expected_purchases += click * buy
                if index < half:
                    run.expected_before += click * buy
                run.slots += 1
                run.explored_slots += item.explored
                if item.product_id in run.new_impressions and half <= index < half + WINDOW:
                    run.new_impressions[item.product_id] += 1
                if behaviour.random() < click:
                    purchased = bool(behaviour.random() < buy)
                    run.sampled_purchases += purchased
                    events.append(Event(user_id, item.product_id, purchased))
            if (index + 1) % EVENT_BATCH == 0 and events:
                runtime.add_interactions(events)
                events = []
            if (index + 1) % args.sync_every == 0:
                runtime.refresher.sync_impressions()
        run.seconds = time.perf_counter() - started
        return run
    finally:
        simulation.close()


def judge(explored: Run, plain: Run, args: argparse.Namespace, verdicts: Verdicts) -> None:
    """Print both runs' figures and judge the targets."""
    print(
        f"simulated shop: {args.users} users, {args.products} products + 5 new at request "
        f"{args.requests // 2}, {args.requests} requests of {LIST_LENGTH}, "
        f"impressions synced every {args.sync_every} requests"
    )
    print(f"{'':<34}{'exploration 0.1':>16}{'exploration 0':>16}")
    rows = [
        ("expected purchases", lambda r: f"{r.expected_purchases:.1f}"),
        ("  before the new products", lambda r: f"{r.expected_before:.1f}"),
        ("  after", lambda r: f"{r.expected_purchases - r.expected_before:.1f}"),
        ("sampled purchases", lambda r: f"{r.sampled_purchases}"),
        (
            "explored slots (share)",
            lambda r: f"{r.explored_slots} ({r.explored_slots / r.slots:.1%})",
        ),
        ("model versions served", lambda r: f"{len(r.versions)}"),
        ("seconds", lambda r: f"{r.seconds:.1f}"),
    ]
    for name, shown in rows:
        print(f"{name:<34}{shown(explored):>16}{shown(plain):>16}")
    print(f"impressions of each new product in the {WINDOW} requests after it appeared:")
    for product_id in explored.new_impressions:
        print(
            f"  product {product_id}: {explored.new_impressions[product_id]:>5} with exploration, "
            f"{plain.new_impressions[product_id]:>3} without"
        )
    fewest = min(explored.new_impressions.values())
    cost = 1 - explored.expected_purchases / plain.expected_purchases
    print(
        f"conversion cost of exploration: {cost:+.2%} expected, "
        f"{1 - explored.sampled_purchases / max(plain.sampled_purchases, 1):+.2%} sampled"
    )
    verdicts.check(
        f"each new product shown >= {MIN_IMPRESSIONS} times within {WINDOW} requests",
        f"fewest {fewest}",
        fewest >= MIN_IMPRESSIONS,
    )
    verdicts.check(
        f"conversion cost <= {MAX_COST:.0%} of exploration 0 (expected purchases)",
        f"{cost:+.2%}",
        cost <= MAX_COST,
    )
    before = 1 - explored.expected_before / plain.expected_before
    verdicts.inform("conversion cost before the new products appeared", f"{before:+.2%}")
    verdicts.inform(
        "new products shown without exploration", f"{sum(plain.new_impressions.values())}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests per run")
    parser.add_argument("--users", type=int, default=500, help="simulated users")
    parser.add_argument("--products", type=int, default=40, help="products before the new ones")
    parser.add_argument(
        "--sync-every", type=int, default=200, help="requests between impression syncs"
    )
    add_record_option(parser)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    verdicts = Verdicts("bench_exploration.py", record=args.record)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for share in (0.1, 0.0):
            folder = Path(tmp) / f"share-{share}"
            folder.mkdir()
            runs[share] = run_shop(folder, args, share)
    judge(runs[0.1], runs[0.0], args, verdicts)
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
