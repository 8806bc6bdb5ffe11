"""Benchmark of recommendation quality: every ranking model, tuned on validation only.

Usage: python bench/bench_quality.py [PATH] [--seed S] [--k K] [--repeats N]
       [--time-windows N] [--protocol NAME ...] [--per-user FILE]
       [--record FILE] [--readme FILE]

``--protocol`` (repeatable) runs only the protocols named (ml-time-global,
ml-time, ml-holdout, sim-time, sim-holdout); the default runs every one.

PATH defaults to ../shared/datasets/ml-latest-small/ratings.csv relative to the
repository root; when it is absent, MovieLens is skipped with a message and
only the simulated shop is measured (ml-100k is not on this machine).

The protocol (docs/evaluation.md states it in full):

- headline: a time split. On MovieLens a global cut (``time-global``): train
  on every rating before the cut, test on the next 10% of the log, users with
  no rating before the cut left out; test windows rolled back in time, as many
  as keep at least half the log for training (five; ``--time-windows``). A
  cut tests only the users active on both sides of it, some 20 a window on
  MovieLens whatever the window's width, so more cuts are what add test users.
  The simulated shop has no global clock (its users are simulated one after
  the other), so there the time split is each user's last 2 products in the
  order the user found them (``time``), three windows rolled back. Beside it,
  on MovieLens, each user's last 5 ratings (``time``, three windows rolled
  back), and on both the random per-user 20% holdout, seeds S, S+1, S+2.
- validation: for each split, every model's settings (``tune_on_training``
  over a small grid), its training input (every rating, or ratings >= 4 only)
  and the champion are chosen on validation splits carved from that split's
  training rows only (``validation_splits``: on the global time split three
  cuts rolled back, each the last 10% of what precedes it, figures averaged;
  each user's latest rows for the last-n split; a seeded 10% of each user's
  rows for the holdout); the test rows are read once, to report.
- relevance: a test rating >= 4; candidates: every training product except
  the user's own training products; NDCG@k as ``recsys.evaluation.metrics``.
- figures: mean over the splits +- the half-width of the 95% Student-t
  interval; the headline's ratio targets also with a paired bootstrap interval
  over the test users (``recsys.evaluation.paired``) and the share of
  resamples that reach the target.

The models are the registry's (``recsys.models.MODELS``): a model added there
appears in the table; models without a grid here are scored with their
defaults. Beside them, "ease (no recency)": EASE tuned over l2 alone, as it
was before its recency option, and "als (no arrivals)": ALS tuned without
lifting new arrivals, the single models the recency-weighted EASE and the
arrival-lifting ALS are judged against. Then the targets, with PASS or FAIL
(exit 1 if any fails):

- MovieLens headline: the best model at least 2.0x popularity's NDCG@k;
- every personal model at least 1.0x popularity's, on each data set and
  protocol;
- MovieLens, each protocol: the project's ALS (weighting, alpha,
  regularisation and training input chosen on validation) within 1% of
  implicit's AlternatingLeastSquares tuned on the same validation split
  (binary input of every rating, a grid around regularisation 10);
- MovieLens headline: the best model vs the best single model of before
  (EASE without recency, ALS without arrivals, item-kNN) >= 1.03x, judged
  only when a model other than these and popularity and SVD is run (the
  ranker, EASE with recency, ALS with arrivals).

The other protocols print the same two ratios for information.

It also prints the measured comparison of the training input (every rating
against ratings >= 4 only) per model, on validation and on the test.
With ``--readme FILE`` (``make bench`` passes README.md when recording) the
headline table is written between the quality markers of FILE.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.loaders import (  # noqa: E402
    Dataset,
    load_dataset,
    relevant_mask,
    simulated_dataset,
)
from recsys.data.ratings import derive_ratings  # noqa: E402
from recsys.data.simulate import SimulationConfig, simulate_shop  # noqa: E402
from recsys.evaluation import metrics  # noqa: E402
from recsys.evaluation.evaluate import (  # noqa: E402
    CANDIDATE_SET,
    half_width,
    relevance_rule,
    score_split,
    training_rows,
)
from recsys.evaluation.model_params import model_factory  # noqa: E402
from recsys.evaluation.paired import paired_bootstrap_ratio  # noqa: E402
from recsys.evaluation.splits import (  # noqa: E402
    DEFAULT_MIN_TRAIN_SHARE,
    DEFAULT_TIME_WINDOW,
    Split,
    global_time_windows,
    make_splits,
    products_by_user,
    validation_splits,
)
from recsys.evaluation.tuning import tune_on_training  # noqa: E402
from recsys.models import MODELS  # noqa: E402

DEFAULT_PATH = REPO / ".." / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
THRESHOLD = 4.0
MIN_BEST_RATIO = 2.0
MIN_PERSONAL_RATIO = 1.0
MAX_ALS_GAP = 0.01
MIN_COMBINED_RATIO = 1.03
PAIRED_RESAMPLES = 2000
PAIRED_CONFIDENCE = 0.95
# EASE as it was before its recency option: tuned over l2 alone, every
# product of a user weighed alike. It is run beside the registry's models
# (under this name, with the registry's "ease"), so that the recency-weighted
# EASE is judged against the single model it improves on.
PLAIN_EASE = "ease (no recency)"
# ALS as it was before new arrivals were lifted, likewise.
PLAIN_ALS = "als (no arrivals)"
VARIANTS = {PLAIN_EASE: "ease", PLAIN_ALS: "als"}
SINGLE_MODELS = (PLAIN_EASE, PLAIN_ALS, "itemknn")
# Models that are neither popularity nor one of today's single models (the
# ranker, EASE weighted by recency, ALS lifting new arrivals): judged against
# the best single model.
TODAY = ("popular", "svd", *SINGLE_MODELS)


@dataclass(frozen=True)
class ProtocolPlan:
    """One protocol the bench can run: its data set, split and what it compares besides."""

    protocol: str
    label: str
    leave_last: int = 1
    with_implicit: bool = False
    compare_inputs: bool = False


# What --protocol can run alone, in the order the bench runs them: MovieLens'
# three protocols ("ml-") and the shop's two ("sim-").
PROTOCOLS = {
    "ml-time-global": ProtocolPlan(
        "time-global", "global time split", with_implicit=True, compare_inputs=True
    ),
    "ml-time": ProtocolPlan("time", "last 5 per user", 5, with_implicit=True),
    "ml-holdout": ProtocolPlan("holdout", "random holdout", with_implicit=True),
    "sim-time": ProtocolPlan("time", "last 2 per user", 2, compare_inputs=True),
    "sim-holdout": ProtocolPlan("holdout", "random holdout"),
}
PROTOCOL_NAMES = tuple(PROTOCOLS)

# The grids each model is tuned over on validation (its defaults first).
IMPLICIT_GRID = [
    {"factors": 64, "regularization": reg, "alpha": alpha}
    for reg in (5.0, 10.0, 20.0)
    for alpha in (1.0, 5.0)
]
# The rating models' ranking score (recsys.models.rating_rank): the weight of
# the liked-count prior up to its limit, popularity's own ranking (inf), so
# validation can never choose below popularity fitted on liked ratings; the
# support shrinkage; what counts as liked. One fit serves every point.
RATING_RANK_GRID = [
    {"popularity_weight": w, "support_shrinkage": k, "liked_rating": liked}
    for liked in (4.0, None)
    for w in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
    for k in (0.0, 10.0, 50.0, 200.0)
]
GRIDS: dict[str, list[dict[str, Any]]] = {
    "svd": RATING_RANK_GRID,
    "blend": RATING_RANK_GRID,
    # One fit per l2 serves every recency (EASERecommender.rank_with).
    "ease": [
        {"l2": l2, "recency": recency}
        for l2 in (500.0, 1000.0, 2500.0, 5000.0)
        for recency in (0.0, 5.0, 10.0, 20.0, 50.0)
    ],
    PLAIN_EASE: [{"l2": l2, "recency": 0.0} for l2 in (500.0, 1000.0, 2500.0, 5000.0)],
    "itemknn": [{"neighbours": n} for n in (50, 100, 200)],
    # Stage 2 learns from each user's latest rows, or from random shares of
    # them (as a random holdout draws its test rows).
    "ranker": [
        {"validation_order": "time"},
        {"validation_order": "random", "validation_fraction": 0.2},
    ],
    # The same points as implicit's grid (binary input: implicit's confidence
    # is alpha, ours 1 + alpha), and rating-weighted ones beside them.
    PLAIN_ALS: [
        *(
            {"factors": 64, "regularization": p["regularization"], "alpha": p["alpha"] - 1.0}
            | {"weighting": "binary"}
            for p in IMPLICIT_GRID
        ),
        *(
            {"factors": 64, "regularization": reg, "alpha": alpha, "weighting": "engagement"}
            for reg in (10.0, 20.0)
            for alpha in (1.0,)
        ),
        # Confidence 2 between implicit's 1 and 5, and every binary point on
        # liked pairs only (min_engagement 4): the training input chosen with
        # the other settings, not after them.
        *(
            {"factors": 64, "regularization": reg, "alpha": 1.0, "weighting": "binary"}
            for reg in (10.0, 20.0)
        ),
        *(
            {"factors": 64, "regularization": reg, "alpha": alpha, "weighting": "binary"}
            | {"min_engagement": THRESHOLD}
            for reg in (5.0, 10.0, 20.0)
            for alpha in (0.0, 1.0, 4.0)
        ),
    ],
}
# ALS: each point above without arrivals, and each on liked pairs only (the
# points validation chose before arrivals) with each of these; points that
# differ only in them share one fit (rank_with).
ARRIVAL_GRID = [
    {"arrival_days": days, "arrival_lift": lift, "uptake_lift": uptake}
    for days in (180.0, 365.0, 730.0)
    for lift in (0.5, 1.0, 2.0)
    for uptake in (0.0, 1.0, 2.0)
]
GRIDS["als"] = [
    *GRIDS[PLAIN_ALS],
    *(
        point | arrivals
        for point in GRIDS[PLAIN_ALS]
        if "min_engagement" in point
        for arrivals in ARRIVAL_GRID
    ),
]


# The training inputs compared: every training rating, or ratings >= 4 only.
INPUTS: tuple[tuple[str, float | None], ...] = (("all ratings", None), (">= 4 only", THRESHOLD))


@dataclass
class ModelRuns:
    """One model's figures over the splits of a protocol."""

    test: list[float] = field(default_factory=list)
    # Each split's test users and their NDCG (the values ``test`` averages).
    test_by_user: list[dict[int, float]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    input_choice: list[str] = field(default_factory=list)
    # Training input -> validation and test NDCG per split.
    by_input: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    fit_seconds: list[float] = field(default_factory=list)


@dataclass
class ProtocolResult:
    """Every model's runs on one protocol of one data set."""

    label: str
    description: str
    splits: list[dict[str, Any]]
    models: dict[str, ModelRuns]
    implicit: list[float] = field(default_factory=list)
    implicit_params: list[dict[str, Any]] = field(default_factory=list)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ranking_models() -> list[str]:
    """Return the registry's models, popularity first, and the variants after their model."""
    names = sorted(MODELS, key=lambda name: (name != "popular", list(MODELS).index(name)))
    for variant, model in VARIANTS.items():
        names.insert(names.index(model) + 1, variant)
    return names


def ndcg_on(fitted, split: Split, k: int) -> float:
    scores = score_split(fitted, split, k, THRESHOLD)
    return float(scores.get(f"ndcg@{k}", 0.0))


def ndcg_by_user_on(fitted, split: Split, k: int) -> dict[int, float]:
    """Return each ranked test user's NDCG@k, ranked as ``score_split`` ranks."""
    relevant = products_by_user(split.test[relevant_mask(split.test, THRESHOLD)])
    batch = fitted.recommend(relevant, k, exclude=products_by_user(split.train))
    lists = {user: ranked.product_ids for user, ranked in batch.lists.items()}
    return metrics.ndcg_by_user(lists, {user: relevant[user] for user in lists}, k)


def implicit_ndcg(train: pd.DataFrame, split: Split, params: Mapping[str, Any], k: int) -> float:
    """Fit implicit's own ALS on binary input and score it as any model is scored."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    users = np.unique(train["user_id"].to_numpy())
    items = np.unique(train["product_id"].to_numpy())
    rows = np.searchsorted(users, train["user_id"].to_numpy())
    cols = np.searchsorted(items, train["product_id"].to_numpy())
    matrix = scipy.sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items))
    )
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params["factors"],
            regularization=params["regularization"],
            alpha=params["alpha"],
            iterations=15,
            random_state=42,
            num_threads=1,
        )
        model.fit(matrix, show_progress=False)
    user_factors, item_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
    # Rank as score_split ranks: every training product but the user's own.
    relevant = products_by_user(split.test[split.test["rating"] >= THRESHOLD])
    seen = products_by_user(train)
    lists = {}
    for user, _ in relevant.items():
        row = int(np.searchsorted(users, user))
        if row >= len(users) or users[row] != user:
            continue
        scores = item_factors @ user_factors[row]
        scores[np.searchsorted(items, seen[user])] = -np.inf
        lists[user] = items[np.argsort(-scores, kind="stable")[:k]]
    return metrics.ndcg_at_k(lists, {user: relevant[user] for user in lists}, k)


def tuned_implicit(
    train: pd.DataFrame, split: Split, protocol: str, seed: int, k: int, leave_last: int
):
    """Return implicit's best grid point on validation and its test NDCG."""
    windows = validation_splits(train, protocol, seed, leave_last=leave_last)

    def on_validation(params: Mapping[str, Any]) -> float:
        return float(np.mean([implicit_ndcg(w.train, w, params, k) for w in windows]))

    best = max(IMPLICIT_GRID, key=lambda p: (on_validation(p), -IMPLICIT_GRID.index(p)))
    return best, implicit_ndcg(train, split, best, k)


def run_protocol(
    dataset: Dataset,
    protocol: str,
    label: str,
    seed: int,
    k: int,
    repeats: int,
    leave_last: int = 1,
    with_implicit: bool = False,
    compare_inputs: bool = False,
) -> ProtocolResult:
    splits = make_splits(dataset.feedback, protocol, seed, leave_last=leave_last, repeats=repeats)
    models = {name: ModelRuns() for name in ranking_models()}
    result = ProtocolResult(label, "", [split.cold_counts() for split in splits], models)
    for index, split in enumerate(splits):
        started = time.perf_counter()
        split_seed = seed + index
        windows = validation_splits(split.train, protocol, split_seed, leave_last=leave_last)
        for name, runs in models.items():
            model = VARIANTS.get(name, name)
            params: dict[str, Any] = {}
            # The training input, chosen on validation: every rating, or >= 4 only.
            figures: dict[str, float] = {}
            if name in GRIDS:
                tuned = tune_on_training(
                    split.train,
                    model,
                    f"ndcg@{k}",
                    protocol=protocol,
                    n_trials=len(GRIDS[name]) + 1,
                    seed=split_seed,
                    threshold=THRESHOLD,
                    rating_scale=dataset.rating_scale,
                    leave_last=leave_last,
                    grid=GRIDS[name],
                )
                params = tuned.best_params
                # The winner's fit on every validation rating is the search's own.
                figures["all ratings"] = tuned.best_score
            factory = model_factory(model, {model: params}, dataset.rating_scale)
            for choice, minimum in INPUTS:
                if choice not in figures:
                    figures[choice] = float(
                        np.mean(
                            [
                                ndcg_on(factory().fit(training_rows(w.train, minimum)), w, k)
                                for w in windows
                            ]
                        )
                    )
            chosen = max(figures, key=lambda c: (figures[c], c == "all ratings"))
            for choice, minimum in INPUTS:
                # The input not chosen is fitted on the test split only for the
                # comparison table of the headline protocol.
                if choice != chosen and not compare_inputs:
                    continue
                start = time.perf_counter()
                fitted = factory().fit(training_rows(split.train, minimum))
                seconds = time.perf_counter() - start
                by_user = ndcg_by_user_on(fitted, split, k)
                test_ndcg = float(np.mean(list(by_user.values()))) if by_user else 0.0
                record = runs.by_input.setdefault(choice, {"validation": [], "test": []})
                record["validation"].append(figures[choice])
                record["test"].append(test_ndcg)
                if choice == chosen:
                    runs.test.append(test_ndcg)
                    runs.test_by_user.append(by_user)
                    runs.fit_seconds.append(seconds)
            runs.params.append(params)
            runs.input_choice.append(chosen)
        if with_implicit:
            best, figure = tuned_implicit(split.train, split, protocol, split_seed, k, leave_last)
            result.implicit.append(figure)
            result.implicit_params.append(best)
        print(
            f"  ({dataset.name}, {label}: split {index + 1} of {len(splits)} "
            f"in {time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    return result


def mean_pm(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{np.mean(values):.4f}"
    return f"{np.mean(values):.4f} +- {half_width(values):.4f}"


def print_protocol(name: str, result: ProtocolResult, k: int) -> None:
    users = [s["test_users"] for s in result.splits]
    ranked = [len(by_user) for by_user in result.models["popular"].test_by_user]
    print(
        f"  {result.label}: {len(result.splits)} splits; test users per split {users} "
        f"(with a relevant test row, ranked by popularity: {ranked}, {sum(ranked)} in all)"
    )
    header = ["model", f"ndcg@{k} (mean +- 95%)", "x popular", "training input", "settings"]
    popular = float(np.mean(result.models["popular"].test))
    rows = []
    for model, runs in result.models.items():
        mean = float(np.mean(runs.test))
        inputs = sorted(set(runs.input_choice))
        settings = "; ".join(sorted({_short(p) for p in runs.params})) or "defaults"
        rows.append(
            [model, mean_pm(runs.test), f"{mean / popular:.2f}", ", ".join(inputs), settings]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("    " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _short(params: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def print_inputs(result: ProtocolResult, k: int) -> None:
    print(
        f"  training input on {result.label}: ndcg@{k} fitted on every rating vs on "
        "ratings >= 4 only (validation | test, means over splits)"
    )
    width = max(len(model) for model in result.models)
    for model, runs in result.models.items():
        if len(runs.by_input) < len(INPUTS):
            continue
        every, high = runs.by_input["all ratings"], runs.by_input[">= 4 only"]
        print(
            f"    {model:{width}s} all {np.mean(every['validation']):.4f} | "
            f"{np.mean(every['test']):.4f}   >=4 {np.mean(high['validation']):.4f} | "
            f"{np.mean(high['test']):.4f}   chosen on validation: "
            f"{', '.join(sorted(set(runs.input_choice)))}"
        )


def judge(
    name: str, results: list[ProtocolResult], headline: bool, k: int, verdicts: Verdicts
) -> None:
    for position, result in enumerate(results):
        popular = float(np.mean(result.models["popular"].test))
        tag = f"{name}, {result.label}"
        for model, runs in result.models.items():
            if model == "popular":
                continue
            ratio = float(np.mean(runs.test)) / popular
            ok = verdicts.check(
                f"{tag}: {model} ndcg@{k} >= {MIN_PERSONAL_RATIO:g}x popular's",
                f"{ratio:.2f}x",
                ratio >= MIN_PERSONAL_RATIO,
            )
            print(f"    {tag}: {model} {ratio:.2f}x popular (target >= 1.00)  {verdict(ok)}")
        means = {m: float(np.mean(r.test)) for m, r in result.models.items()}
        best = max(means, key=means.__getitem__)
        if headline and position == 0:
            ratio = means[best] / popular
            ok = verdicts.check(
                f"{tag}: best model ({best}) ndcg@{k} >= {MIN_BEST_RATIO:g}x popular's",
                f"{ratio:.2f}x",
                ratio >= MIN_BEST_RATIO,
            )
            print(
                f"    {tag}: best model {best} {ratio:.2f}x popular (target >= 2.0)  {verdict(ok)}"
            )
            single = max(SINGLE_MODELS, key=means.__getitem__)
            combined = [m for m in means if m not in TODAY]
            ratio = means[best] / means[single]
            line = (
                f"best model vs best single model ({', '.join(SINGLE_MODELS)}): "
                f"{best} / {single} = {ratio:.3f}x"
            )
            if combined:
                ok = verdicts.check(
                    f"{tag}: best model vs best single model >= {MIN_COMBINED_RATIO}x",
                    f"{ratio:.3f}x",
                    ratio >= MIN_COMBINED_RATIO,
                )
                print(f"    {tag}: {line} (target >= {MIN_COMBINED_RATIO})  {verdict(ok)}")
            else:
                verdicts.not_run(
                    f"{tag}: best model vs best single model >= {MIN_COMBINED_RATIO}x",
                    f"no model beyond {', '.join(TODAY)} is registered ({ratio:.3f}x today)",
                )
                print(f"    {tag}: {line} (judged once a model beyond these is registered)")
        if headline and position == 0:
            judge_paired(tag, result, best, single, k, verdicts)
        else:
            # The targets belong to the headline; the same ratios elsewhere inform.
            single = max(SINGLE_MODELS, key=means.__getitem__)
            measured = (
                f"best model {best} {means[best] / popular:.2f}x popular; "
                f"{best} / {single} = {means[best] / means[single]:.3f}x the best single model"
            )
            verdicts.inform(f"{tag}: best model vs popular and vs best single model", measured)
            print(f"    {tag}: {measured} (information)")
        if result.implicit:
            ours, theirs = (
                float(np.mean(result.models["als"].test)),
                float(np.mean(result.implicit)),
            )
            ratio = ours / theirs
            print(
                f"    {tag}: implicit ALS tuned on validation (binary input, factors 64, "
                f"regularization 5/10/20, alpha 1/5): ndcg@{k} {mean_pm(result.implicit)}, "
                f"chosen {'; '.join(sorted({_short(p) for p in result.implicit_params}))}"
            )
            ok = verdicts.check(
                f"{tag}: als ndcg@{k} within {MAX_ALS_GAP:.0%} of implicit's tuned ALS",
                f"{ratio:.3f}x",
                ratio >= 1 - MAX_ALS_GAP,
            )
            print(
                f"    {tag}: als {ours:.4f} / implicit {theirs:.4f} = {ratio:.3f} "
                f"(target >= {1 - MAX_ALS_GAP:.2f})  {verdict(ok)}"
            )


def paired_users(
    first: Sequence[Mapping[int, float]], second: Sequence[Mapping[int, float]]
) -> tuple[list[dict[int, float]], list[dict[int, float]], int]:
    """Return two models' per-user figures on the users both ranked, split by split.

    A model trained on ratings >= 4 only does not know a user whose training
    ratings are all below 4, so two models' ranked users can differ by a few;
    the pairing keeps the users both ranked and counts the others.
    """
    left, right, dropped = [], [], 0
    for a, b in zip(first, second, strict=True):
        both = a.keys() & b.keys()
        dropped += len(a.keys() | b.keys()) - len(both)
        left.append({user: a[user] for user in both})
        right.append({user: b[user] for user in both})
    return left, right, dropped


def judge_paired(
    tag: str, result: ProtocolResult, best: str, single: str, k: int, verdicts: Verdicts
) -> None:
    """Print the ratio targets with a paired bootstrap interval over the test users.

    The users of each split are resampled (the same draw for both models), so
    the interval says how far a ratio could move by which users happen to be
    in the test windows alone; the share of resamples that reach the target
    says how clear a PASS or a FAIL is.
    """
    pairs = [
        (model, "popular", MIN_PERSONAL_RATIO) for model in result.models if model != "popular"
    ]
    pairs += [(best, "popular", MIN_BEST_RATIO), (best, single, MIN_COMBINED_RATIO)]
    print(
        f"    {tag}: ratios with a {PAIRED_CONFIDENCE:.0%} paired bootstrap interval over "
        f"test users ({PAIRED_RESAMPLES} resamples, users drawn within each split)"
    )
    for model, other, target in pairs:
        if model == other:
            continue
        left, right, dropped = paired_users(
            result.models[model].test_by_user, result.models[other].test_by_user
        )
        interval = paired_bootstrap_ratio(left, right, PAIRED_RESAMPLES, PAIRED_CONFIDENCE, seed=0)
        share = interval.share_at_least(target)
        measured = (
            f"{interval.ratio:.3f}x [{interval.low:.3f}, {interval.high:.3f}], "
            f"{share:.0%} of resamples >= {target:g}"
        )
        verdicts.inform(
            f"{tag}: {model} / {other} ndcg@{k} (target >= {target:g}x), paired bootstrap",
            measured,
        )
        print(
            f"      {model} / {other}: {measured} (users per split "
            f"{list(interval.users)}, {dropped} ranked by one model only)"
        )


def simulated_with_order() -> Dataset:
    """Return the simulated shop's feedback with each pair's discovery order as its time.

    The simulator writes each user's clicks in the order the user found the
    products, users one after the other: the position of a pair's first
    click orders a user's products in time (no global clock exists).
    """
    shop = simulate_shop(SimulationConfig())
    log = shop.interactions
    feedback = derive_ratings(log)
    first = (
        log.assign(position=np.arange(len(log)))
        .groupby(["user_id", "product_clicked"])["position"]
        .min()
    )
    keys = pd.MultiIndex.from_arrays([feedback["user_id"], feedback["product_id"]])
    return simulated_dataset(feedback.assign(timestamp=first.reindex(keys).to_numpy()))


def headline_table(results: Mapping[str, list[ProtocolResult]], k: int) -> str:
    """Return the README's quality table: NDCG@k per model, each data set and protocol."""
    columns = [(name, result) for name, runs in results.items() for result in runs]
    header = ["model", *(f"{name}, {result.label}" for name, result in columns)]
    models = list(next(iter(results.values()))[0].models)
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for model in models:
        cells = [f"`{model}`"]
        for _, result in columns:
            runs = result.models[model]
            popular = float(np.mean(result.models["popular"].test))
            cells.append(f"{mean_pm(runs.test)} ({float(np.mean(runs.test)) / popular:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(path: Path, table: str, k: int, splits: str) -> None:
    """Replace the table between the quality markers of a README."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- quality:start -->\n).*?(<!-- quality:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no <!-- quality:start --> ... <!-- quality:end --> markers")
    block = (
        f"NDCG@{k} (mean +- 95% interval over the splits: {splits}; x popularity), every "
        "model tuned "
        "on validation rows carved from the training part only; relevant = a test rating "
        ">= 4, candidates = every product but the user's own training products. Written by "
        "`bench/bench_quality.py --readme README.md`:\n\n" + table + "\n"
    )
    path.write_text(pattern.sub(lambda m: m.group(1) + block + m.group(2), text), "utf-8")


def write_per_user(path: Path, results: Mapping[str, list[ProtocolResult]]) -> None:
    """Write each model's per-user test NDCG, split by split, as JSON."""
    data = {
        f"{name}, {result.label}": {
            model: [
                {str(user): value for user, value in split.items()} for split in runs.test_by_user
            ]
            for model, runs in result.models.items()
        }
        for name, runs in results.items()
        for result in runs
    }
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def run_plan(
    dataset: Dataset, name: str, args: argparse.Namespace, time_windows: int
) -> ProtocolResult:
    """Run the protocol ``--protocol name`` names on a data set."""
    plan = PROTOCOLS[name]
    return run_protocol(
        dataset,
        plan.protocol,
        plan.label,
        args.seed,
        args.k,
        time_windows if plan.protocol == "time-global" else args.repeats,
        plan.leave_last,
        with_implicit=plan.with_implicit,
        compare_inputs=plan.compare_inputs,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="splits per protocol (seeds, or windows of the last-n splits)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the headline table between FILE's quality markers",
    )
    parser.add_argument(
        "--time-windows",
        type=int,
        default=None,
        metavar="N",
        help=(
            "test windows of MovieLens' global time split (default: as many as keep "
            f"{DEFAULT_MIN_TRAIN_SHARE * 100:g}%% of the log for training: {global_time_windows()})"
        ),
    )
    parser.add_argument(
        "--protocol",
        action="append",
        choices=PROTOCOL_NAMES,
        default=None,
        help="run only this protocol (repeatable; default: every one)",
    )
    parser.add_argument(
        "--per-user",
        type=Path,
        default=None,
        metavar="FILE",
        help="write every model's per-user test NDCG, split by split, to FILE as JSON",
    )
    add_record_option(parser)
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (an interval needs two splits)")
    time_windows = global_time_windows() if args.time_windows is None else args.time_windows
    if time_windows < 2:
        parser.error("--time-windows must be at least 2 (an interval needs two splits)")
    chosen = set(args.protocol or PROTOCOL_NAMES)
    verdicts = Verdicts("bench_quality.py", record=args.record)
    print(f"relevance: {relevance_rule(THRESHOLD)}; candidates: {CANDIDATE_SET}")
    print(
        "every model's settings, training input and the champion are chosen on validation "
        "rows carved from each split's training rows; the test rows are read only to report"
    )
    results: dict[str, list[ProtocolResult]] = {}
    movielens_runs = [name for name in PROTOCOL_NAMES[:3] if name in chosen]
    if movielens_runs and args.path.is_file():
        movielens = load_dataset(args.path)
        print(f"{movielens.name}: {len(movielens.feedback)} ratings")
        if "ml-time-global" in chosen:
            print(
                f"global time split: {time_windows} test windows of {DEFAULT_TIME_WINDOW:.0%} "
                "of the log rolled back in time"
                + (
                    f", as many as keep at least {DEFAULT_MIN_TRAIN_SHARE:.0%} of the log for "
                    "training (a cut tests only the users active on both sides of it, some "
                    "20 a window here: more cuts are what adds test users)"
                    if args.time_windows is None
                    else " (--time-windows)"
                )
            )
        runs = [
            run_plan(movielens, name, args, time_windows)
            for name in PROTOCOL_NAMES
            if name.startswith("ml-") and name in chosen
        ]
        results["ml-latest-small"] = runs
    elif movielens_runs:
        verdicts.not_run("MovieLens targets", f"no ratings file at {args.path}")
        print(
            f"skipping MovieLens: no ratings file at {args.path} (pass the path of "
            "ml-latest-small/ratings.csv as the first argument)"
        )
    if {"sim-time", "sim-holdout"} & chosen:
        shop = simulated_with_order()
        shop_runs = [
            run_plan(shop, name, args, time_windows)
            for name in PROTOCOL_NAMES
            if name.startswith("sim-") and name in chosen
        ]
        results["simulated"] = shop_runs
    for name, runs in results.items():
        print(f"{name}:")
        for result in runs:
            print_protocol(name, result, args.k)
        print_inputs(runs[0], args.k)
        # The headline targets belong to the global time split only.
        headline = name == "ml-latest-small" and "ml-time-global" in chosen
        judge(name, runs, headline, args.k, verdicts)
    if args.per_user:
        write_per_user(args.per_user, results)
    table = headline_table(results, args.k)
    print("headline table (README):")
    print(table)
    status = verdicts.finish()
    # After the record: it names the commit, which the README edit would make dirty.
    if args.readme:
        counts = "; ".join(
            f"{len(result.splits)} on {name}, {result.label}"
            for name, runs in results.items()
            for result in runs
        )
        write_readme(args.readme, table, args.k, counts)
    return status


if __name__ == "__main__":
    sys.exit(main())
