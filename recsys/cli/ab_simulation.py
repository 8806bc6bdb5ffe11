"""``simulate-ab``: an A/B test of the real serving code, with simulated users who know their taste.

The simulator makes a shop and its history (``recsys.data.simulate``); the
service is built on it as ``flask --app app init`` builds it (a temporary
SQLite store and model directory), and an experiment is started through the
same ``ExperimentLayer`` that ``/recommend`` calls. Then, each simulated
day, every user asks for a list, clicks and buys according to their true
taste, and the events go back through the ingestion path with the list's
``recommendation_id``. The report is the one ``GET /experiments/<name>/report``
gives.

How a simulated user reacts to a list (the simulator's own taste model):
the product at position k (0-based) is looked at with probability
``EXAMINE_DECAY ** k``; a looked-at product is clicked with probability
``CLICK_SCALE * (affinity + 0.05) ** taste_strength``, where affinity is the
user's taste for the product's category over their favourite category's; a
click becomes a purchase with the simulator's logistic purchase model
(taste raises it, price lowers it) at the mean price sensitivity.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.cli.arguments import add_command, int_at_least
from recsys.data.catalog import write_catalog
from recsys.data.events import Event
from recsys.data.interactions import write_interactions
from recsys.data.simulate import (
    CATEGORIES,
    DEFAULT_PRODUCTS,
    DEFAULT_SEED,
    SimulatedShop,
    SimulationConfig,
    simulate_shop,
)
from recsys.evaluation.default_pipeline import PipelineResult

if TYPE_CHECKING:
    from recsys.experiments import ExperimentAnswer

DEFAULT_AB_USERS = 2000
DEFAULT_AB_DAYS = 3
LIST_LENGTH = 5
EXAMINE_DECAY = 0.8
CLICK_SCALE = 0.3
# The simulator draws price sensitivity uniformly from 0.3 to 1.5: its mean.
MEAN_PRICE_SENSITIVITY = 0.9
PERSONAL_VS_POPULAR = (
    {"name": "popular", "weight": 1, "strategy": "popular"},
    {"name": "personal", "weight": 1, "strategy": "champion"},
)
SAME_TWICE = (
    {"name": "a", "weight": 1, "strategy": "champion"},
    {"name": "b", "weight": 1, "strategy": "champion"},
)


def add_experiment_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``simulate-ab`` subcommand."""
    parser = add_command(
        commands,
        "simulate-ab",
        "run a simulated A/B test of personalised lists against popularity",
        "Simulate a shop of N users, build the service on it (a temporary store), start an "
        "experiment (popular as control, the trained model as the treatment; --aa: the model "
        "twice), let the simulated users see lists, click and buy by their true taste for D "
        "days, send the events back with their recommendation ids, and print the report.",
    )
    parser.add_argument(
        "--users", type=int_at_least(1), default=DEFAULT_AB_USERS, metavar="N", help="users"
    )
    parser.add_argument(
        "--days",
        type=int_at_least(1),
        default=DEFAULT_AB_DAYS,
        metavar="D",
        help="visits per user (one list a day)",
    )
    parser.add_argument("--seed", type=int_at_least(0), default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--aa", action="store_true", help="an A/A test: the same strategy in both variants"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=cmd_simulate_ab)


def cmd_simulate_ab(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    """Run the simulated experiment and print its report."""
    with tempfile.TemporaryDirectory(prefix="simulate-ab-") as folder:
        simulation = AbSimulation(Path(folder), args.users, args.seed)
        try:
            report = simulation.run(
                "simulated-aa" if args.aa else "simulated-ab",
                SAME_TWICE if args.aa else PERSONAL_VS_POPULAR,
                args.days,
                np.random.default_rng(args.seed),
            )
        finally:
            simulation.close()
    # The serving stack (scipy.stats through the statistics) loads only when a simulation runs.
    from recsys.experiments import report_text

    print(json.dumps(report, indent=2) if args.json else report_text(report))
    return 0


@dataclass(frozen=True)
class _Taste:
    """What the simulated users truly like: affinity per (user row, product) and purchase logits."""

    affinity: np.ndarray  # users x products, 0..1
    purchase_logit: np.ndarray  # users x products


def _taste(shop: SimulatedShop, config: SimulationConfig) -> _Taste:
    category_index = {c: i for i, c in enumerate(CATEGORIES)}
    product_category = shop.catalog["category"].map(category_index).to_numpy()
    taste = shop.taste
    affinity = taste[:, product_category] / taste.max(axis=1, keepdims=True)
    prices = shop.catalog["price"].to_numpy()
    log_price = np.log(prices / np.median(prices))
    logit = -4.0 + 3.5 * affinity - 1.2 * MEAN_PRICE_SENSITIVITY * log_price[None, :]
    return _Taste(affinity, logit)


class AbSimulation:
    """A simulated shop served by a real ``ServingRuntime``; run experiments on it one by one.

    Args:
        folder: Where the temporary store, log and models go.
        users: Simulated users.
        seed: The shop's seed (catalog, tastes, history).
        products: Products in the catalog.
        overrides: Settings of the service beyond the simulation's own (``EXPLORATION``...).
    """

    def __init__(
        self,
        folder: Path,
        users: int,
        seed: int,
        products: int = DEFAULT_PRODUCTS,
        overrides: Mapping[str, Any] | None = None,
    ):
        from recsys.config import Settings
        from recsys.runtime import ServingRuntime

        self.config = SimulationConfig(users=users, products=products, seed=seed)
        self.shop = simulate_shop(self.config)
        self.taste = _taste(self.shop, self.config)
        log_path = folder / "interactions.csv"
        write_interactions(self.shop.interactions, log_path)
        write_catalog(self.shop.catalog, folder / "products.csv")
        settings = Settings.load(
            {},
            {
                "DATABASE_URL": f"sqlite:///{folder / 'events.db'}",
                "MODEL_DIR": str(folder / "models"),
                "DATA_PATH": str(log_path),
                "MODEL": "svd",
                "LOG_LEVEL": "WARNING",
                **(overrides or {}),
            },
            folder,
        )
        self.runtime = ServingRuntime(settings)
        self.runtime.init()
        self.runtime.load_live_model()

    def close(self) -> None:
        self.runtime.close()

    def run(
        self,
        name: str,
        variants: Sequence[dict[str, Any]],
        days: int,
        rng: np.random.Generator,
        baseline_rate: float = 0.1,
        mde: float = 0.05,
    ) -> dict[str, Any]:
        """Run one experiment to its end and return its report.

        Args:
            name: The experiment's name (also the salt of the assignment).
            variants: Control first, as the admin endpoint takes them.
            days: Visits per user.
            rng: The users' behaviour draws.
            baseline_rate: Control's expected conversion, for the planned size.
            mde: The lift to detect, for the planned size.
        """
        from recsys.experiments import ExperimentAnswer
        from recsys.online import RecommendRequest

        layer = self.runtime.experiments
        layer.create(
            {
                "name": name,
                "metric": "conversion",
                "baseline_rate": baseline_rate,
                "mde": mde,
                "variants": list(variants),
            }
        )
        layer.start(name)
        users = self.shop.users["user_id"].to_numpy()
        for _ in range(days):
            events: list[Event] = []
            links: list[tuple[str, int, int, bool, None]] = []
            for user_id in rng.permutation(users).tolist():
                answer = layer.recommend(RecommendRequest(user_id, LIST_LENGTH))
                assert isinstance(answer, ExperimentAnswer), "an experiment is running"
                for product_id, purchased in self._react(user_id, answer, rng):
                    events.append(Event(user_id, product_id, purchased))
                    links.append((answer.recommendation_id, user_id, product_id, purchased, None))
            if events:
                # The ingestion path of POST /interactions, then the attribution links.
                self.runtime.add_interactions(events)
                layer.link_events(links)
            # What each server's sync thread does every few seconds: a simulated
            # day takes about that long.
            self.runtime.refresher.sync_impressions()
        layer.stop(name)
        return layer.report(name)

    def _react(
        self, user_id: int, answer: ExperimentAnswer, rng: np.random.Generator
    ) -> list[tuple[int, bool]]:
        row = user_id - 1  # simulated users are 1..N in taste-row order
        reactions = []
        for position, item in enumerate(answer.answer.recommendations):
            column = item.product_id - 1
            affinity = self.taste.affinity[row, column]
            click = (
                EXAMINE_DECAY**position
                * CLICK_SCALE
                * (affinity + 0.05) ** self.config.taste_strength
            )
            if rng.random() < click:
                buy = 1.0 / (1.0 + np.exp(-self.taste.purchase_logit[row, column]))
                reactions.append((item.product_id, bool(rng.random() < buy)))
        return reactions
