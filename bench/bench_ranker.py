"""Benchmark: the two-stage ranker's quality, fit time and serving cost, against EASE.

Serving: a simulated shop (``simulate_large``: 5,000 products, 10,000 users,
200,000 clicks) is stored in SQLite, and EASE and the ranker are trained on
it. For a seeded sample of users an uncached /recommend answer is made in
process the way the service makes it (the history read from the store, then
the answering pipeline with caching off, folding the user in), as
bench/bench_fold_in.py does; CPU time per answer, the two models timed in
alternating rounds, best round kept.

Quality and fit time (with ``RATINGS``, MovieLens ``ratings.csv``): every
stage-1 model and the ranker are fitted and scored by the project's
``evaluate`` on the ``time`` split (each user's latest rated film held out)
and on the seeded holdout (a random 20% of each user's rows); NDCG@10 of the
ranker over the best single model (EASE, ALS or item-kNN) on the same split.
The ranker's validation parts follow the split's rule (``RANKER_SETTINGS``).
The ranker's fit time is its longest fit on these splits, wall clock (CPU
seconds beside it: the machine is shared).

How stage 2's parts are drawn (with ``RATINGS``): each user's latest rows
(the default), random fifths and rank fusion (no stage 2), scored on
validation rows carved from the training rows of ``bench_quality``'s two time
splits as it carves them; no test row is read.

Targets: NDCG@10 at least 1.03x the best single model on each split; a fit
under 3 minutes on ml-latest-small; an uncached answer at most 2x EASE's CPU
time at 5,000 products. Exits 1 if a target fails.

Usage: python bench/bench_ranker.py [RATINGS] [--users 300] [--rounds 15] [--record FILE]
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_fold_in import build_store, cpu_per_answer, version_of  # noqa: E402
from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.loaders import Dataset, load_dataset  # noqa: E402
from recsys.evaluation.evaluate import evaluate, score_split  # noqa: E402
from recsys.evaluation.splits import (  # noqa: E402
    global_time_windows,
    make_splits,
    validation_split,
)
from recsys.models import MODELS  # noqa: E402
from recsys.models.popularity import PopularityRecommender  # noqa: E402
from recsys.models.ranker import RankerRecommender  # noqa: E402
from recsys.online.pipeline import Pipeline  # noqa: E402
from recsys.online.rankers import PERSONAL_OR_POPULAR  # noqa: E402
from recsys.online.service import LiveModel  # noqa: E402

SINGLE_MODELS = ("ease", "als", "itemknn")
MIN_QUALITY_RATIO = 1.03
MAX_FIT_SECONDS = 180.0
MAX_COST_RATIO = 2.0
SPLITS = {"time": {"protocol": "time"}, "holdout": {"protocol": "holdout"}}
# The ranker's validation parts are drawn as each split draws its test rows
# (the rule ``validation_split`` follows): each user's latest rows for the
# time split; for the random holdout, random fifths, as its test rows are.
RANKER_SETTINGS = {
    "time": {},
    "holdout": {"validation_order": "random", "validation_fraction": 0.2},
}
# Ways of drawing the parts stage 2 learns from, compared on validation rows
# only: the default (each user's latest rows), random fifths of each user's
# rows, and no stage 2 at all (rank fusion of the stage-1 ranks).
ORDERS = {
    "latest rows": {},
    "random fifths": {"validation_order": "random", "validation_fraction": 0.2},
    "rank fusion": {"min_validation_users": 10**9},
}
# bench_quality's time splits: (protocol, held-out rows per user, splits).
ORDER_SPLITS = {
    "global time split": ("time-global", 1, global_time_windows()),
    "last 5 per user": ("time", 5, 3),
}


def quality(dataset: Dataset, verdicts: Verdicts) -> None:
    """Score the stage-1 models and the ranker on each split; judge NDCG@10 and fit time."""
    names = [*SINGLE_MODELS, "popular", "ranker"]
    print(f"{dataset.name}: {len(dataset.feedback):,} ratings; NDCG@10 by split (evaluate)")
    print(f"  {'split':<9}" + "".join(f"{n:>10}" for n in names) + f"{'ratio':>8}")
    fit_wall, fit_cpu = 0.0, 0.0
    for split, options in SPLITS.items():
        models = {name: MODELS[name] for name in names[:-1]}
        models["ranker"] = functools.partial(_CPUTimedRanker, **RANKER_SETTINGS[split])
        report = evaluate(models, dataset, **options)
        scores = {name: report["models"][name]["ndcg@10"] for name in names}
        best = max(SINGLE_MODELS, key=lambda name: scores[name])
        ratio = scores["ranker"] / scores[best]
        row = "".join(f"{scores[n]:>10.4f}" for n in names)
        print(f"  {split:<9}{row}{ratio:>7.3f}x")
        verdicts.check(
            f"{split}: ranker NDCG@10 >= {MIN_QUALITY_RATIO}x the best single model ({best})",
            f"{ratio:.3f}x",
            ratio >= MIN_QUALITY_RATIO,
        )
        fit_wall = max(fit_wall, report["models"]["ranker"]["fit_seconds"])
        fit_cpu = max(fit_cpu, _CPUTimedRanker.last_cpu_seconds)
    print(f"  ranker fit: {fit_wall:.1f} s wall, {fit_cpu:.1f} s CPU (longest of the splits)")
    verdicts.check(
        f"the ranker fits ml-latest-small in under {MAX_FIT_SECONDS:.0f} s",
        f"{fit_wall:.1f} s",
        fit_wall < MAX_FIT_SECONDS,
    )


def validation_orders(dataset: Dataset) -> None:
    """Print the ranker's NDCG@10 on validation rows for each way of drawing stage 2's parts.

    Each split's validation rows are carved from its training rows by
    ``validation_split``: one cut on the global time split, where
    ``bench_quality`` averages three (``validation_splits``); the ranker
    learns from the rest of the training rows and never reads a test row.
    """
    print(
        "\nstage 2's training parts on bench_quality's time splits: NDCG@10 on validation "
        "rows carved from each split's training rows (mean over splits; no test row read)"
    )
    print(f"  {'split':<19}" + "".join(f"{name:>15}" for name in ORDERS))
    for label, (protocol, leave_last, repeats) in ORDER_SPLITS.items():
        splits = make_splits(dataset.feedback, protocol, 0, leave_last=leave_last, repeats=repeats)
        found: dict[str, list[float]] = {name: [] for name in ORDERS}
        for index, split in enumerate(splits):
            validation = validation_split(split.train, protocol, index, leave_last=leave_last)
            for name, settings in ORDERS.items():
                fitted = RankerRecommender(**settings).fit(validation.train)
                found[name].append(score_split(fitted, validation, 10, 4.0)["ndcg@10"])
        print(f"  {label:<19}" + "".join(f"{np.mean(found[name]):>15.4f}" for name in ORDERS))


class _CPUTimedRanker(RankerRecommender):
    """A ranker that notes the CPU seconds of its last fit (evaluate times the wall clock)."""

    last_cpu_seconds = 0.0

    def fit(self, feedback):  # type: ignore[no-untyped-def]
        started = time.process_time()
        fitted = super().fit(feedback)
        type(self).last_cpu_seconds = time.process_time() - started
        return fitted


def serving_cost(users_wanted: int, rounds: int, verdicts: Verdicts) -> None:
    """Judge the CPU time of an uncached answer by the ranker against EASE's."""
    with tempfile.TemporaryDirectory(prefix="bench-ranker-") as tmp:
        store, catalog, feedback = build_store(Path(tmp))
        popularity = PopularityRecommender().fit(feedback)
        rng = np.random.default_rng(0)
        users = rng.choice(feedback["user_id"].unique(), size=users_wanted, replace=False).tolist()
        pipelines = {}
        for name in ("ease", "ranker"):
            model = MODELS[name]().fit(feedback)
            version = version_of(model, popularity, catalog)
            live = LiveModel()
            live.swap(version)
            pipelines[name] = (Pipeline("bench", live, PERSONAL_OR_POPULAR), version)
        best = {name: float("inf") for name in pipelines}
        for _ in range(rounds):
            for name, (pipeline, version) in pipelines.items():
                spent = cpu_per_answer(store, pipeline, version, users, folded=True)
                best[name] = min(best[name], spent)
        ratio = best["ranker"] / best["ease"]
        print(
            f"\n{len(catalog):,} products, {len(feedback):,} (user, product) pairs (SQLite); "
            f"{users_wanted} users' uncached answers, best of {rounds} rounds, CPU ms per answer"
        )
        print(f"  ease {best['ease'] * 1e3:.2f}   ranker {best['ranker'] * 1e3:.2f}   {ratio:.2f}x")
        verdicts.check(
            f"an uncached ranker answer costs <= {MAX_COST_RATIO}x EASE's (5,000 products)",
            f"{ratio:.2f}x",
            ratio <= MAX_COST_RATIO,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "ratings", nargs="?", type=Path, default=None, help="MovieLens ratings.csv (quality, fit)"
    )
    parser.add_argument("--users", type=int, default=300, help="users sampled for requests")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds; best kept")
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_ranker.py", record=args.record)
    logging.disable(logging.WARNING)
    if args.ratings is not None and args.ratings.is_file():
        dataset = load_dataset(args.ratings)
        quality(dataset, verdicts)
        validation_orders(dataset)
    else:
        why = f"no MovieLens ratings at {args.ratings}" if args.ratings else "no RATINGS given"
        verdicts.not_run("ranker NDCG@10 and fit time on MovieLens", why)
    serving_cost(args.users, args.rounds, verdicts)
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
