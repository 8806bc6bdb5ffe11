"""Benchmark of the quality gate: a fair retrain goes live, a broken one does not, at what cost.

Usage: python bench/bench_gate.py [--users N] [--products P] [--models ease,als] [--record FILE]

A simulated shop (``simulate_shop``) is logged as its users arrive, one
after another; the live version is trained on its first 75 % of events, then
the candidate on all of them (the gate compares them on the users who came
after the live version), through ``publish_trained`` with the gate, as a retrain after
new events would run. For each model:

- the same model refitted (a fair retrain) must go live;
- the same model fitted on shuffled events (it learns no taste) must be
  rejected, the live version staying the newest published;
- the gate's cost: a training with the gate against the same training
  without it, in the same run (the live version's load, one more fit of the
  candidate, the fold-in of every compared user), must stay under 50 % of it.

Prints both figures of each decision, the standard error of their paired
difference and the users compared; exits 1 if a target fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.simulate import SimulationConfig, simulate_shop  # noqa: E402
from recsys.store.artifacts import ModelRegistry  # noqa: E402
from recsys.training import GatePolicy, TrainingSettings, publish_trained  # noqa: E402
from recsys.training.train import fit_locally  # noqa: E402

MAX_GATE_SHARE = 0.5
LIVE_SHARE = 0.75


def fit_on_shuffled_events(name, params, feedback: pd.DataFrame):
    """Fit the model with every event's product drawn at random: it learns no taste."""
    shuffled = feedback.assign(
        product_id=np.random.default_rng(7).permutation(feedback["product_id"].to_numpy())
    )
    pairs = shuffled.groupby(["user_id", "product_id"], as_index=False).agg(
        clicks=("clicks", "sum"), engagement=("engagement", "sum"), rating=("rating", "max")
    )
    return fit_locally(name, params, pairs)


def shop_log(users: int, products: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return a simulated shop's log, its users arriving one after another, and its catalog."""
    shop = simulate_shop(SimulationConfig(users=users, products=products))
    return shop.interactions[["user_id", "product_clicked", "purchased"]], shop.catalog


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench_model(model: str, log, catalog, folder: Path, verdicts: Verdicts) -> None:
    settings = TrainingSettings(model=model)
    first = log.iloc[: int(len(log) * LIVE_SHARE)]

    def publish(root: str, data, fitter=fit_locally, gate=True):
        registry = ModelRegistry(folder / f"{model}-{root}")
        policy = GatePolicy() if gate else None
        return registry, publish_trained(
            data, lambda: catalog, registry, settings, fitter, gate=policy
        )

    for case, fitter in (("fair", fit_locally), ("shuffled", fit_on_shuffled_events)):
        registry, live = publish(case, first)
        (_, meta), seconds = timed(lambda case=case, fitter=fitter: publish(case, log, fitter))
        g = meta.gate
        if "least" in g:
            print(
                f"{model:8} {case:8} {g['decision']:9} candidate {g['candidate']} "
                f"live {g['live']} bar {g['least']} se {g['standard_error']} "
                f"users {g['split']['test_users']} ({seconds:.2f} s)"
            )
        else:  # passed without a comparison (a model that cannot fold in, too few users)
            print(f"{model:8} {case:8} {g['decision']:9} {g['reason']} ({seconds:.2f} s)")
        newest = registry.versions()[0]
        if case == "fair":
            verdicts.check(f"{model}: a fair retrain goes live", g["decision"], not meta.rejected)
        else:
            verdicts.check(
                f"{model}: a model of shuffled events is rejected, the live one stays newest",
                f"{g['decision']}, newest {'live' if newest == live.version else newest}",
                meta.rejected and newest == live.version,
            )
    # The gate's cost: the same training (the fair one), with and without it,
    # the best of three each, taken in turn (the host is shared).
    with_gate, without = [], []
    for _ in range(3):
        publish("cost", first)
        with_gate.append(timed(lambda: publish("cost", log))[1])
        without.append(timed(lambda: publish("plain", log, gate=False))[1])
    share = (min(with_gate) - min(without)) / min(without)
    print(
        f"{model:8} training {min(without):.2f} s, with the gate {min(with_gate):.2f} s "
        f"({share:+.0%}), best of 3"
    )
    verdicts.check(
        f"{model}: the gate adds at most {MAX_GATE_SHARE:.0%} to a training",
        f"{share:+.0%}",
        share <= MAX_GATE_SHARE,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--models", default="ease,als,itemknn")
    add_record_option(parser)
    args = parser.parse_args(argv)
    verdicts = Verdicts("bench_gate.py", record=args.record)
    log, catalog = shop_log(args.users, args.products)
    print(
        f"simulated shop: {args.users} users, {args.products} products, {len(log)} events; "
        f"the live version trained on the first {LIVE_SHARE:.0%}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            bench_model(model, log, catalog, Path(tmp), verdicts)
    return verdicts.finish()


if __name__ == "__main__":
    raise SystemExit(main())
