"""Benchmark: the blend's RMSE against Surprise's rating models, 5-fold on ml-latest-small.

Every model sees the same folds: Surprise's own ``KFold(n_splits, random_state=seed)``
over ``Dataset.load_from_file`` for Surprise's models, and the project's
``kfold_splits`` (the same partition; the bench checks each fold's test pairs
are identical) for the blend. Surprise's models run with their default
settings, as its own benchmark table reports them: SVD, SVD++
(``cache_ratings=True``, which changes speed, not results) and KNNBaseline
(user-based, MSD similarity); KNNBaseline with item-based Pearson-baseline
similarity, its strongest neighbourhood setting here, is printed too.

The blend (``recsys.models.blend``, default settings) is fitted on each
fold's training part alone: its weights come from a validation part carved
out of that training part; the test fold is read only to score.

Targets: the blend's mean RMSE at least 0.025 below Surprise's SVD's, and
every fold's fit under 2 minutes. The fit is judged by the CPU time of this
process (what the fit costs on an idle machine: it runs on one thread but for
numpy's BLAS), since the machine is shared; the wall time and the load
average are printed beside it. Exits 1 if a target fails.

Usage: python bench/bench_rating.py [PATH] [--seed 0] [--folds 5] [--record FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from surprise import SVD, KNNBaseline, Reader, SVDpp, accuracy  # noqa: E402
from surprise import Dataset as SurpriseDataset  # noqa: E402
from surprise.model_selection import KFold  # noqa: E402
from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.loaders import load_dataset  # noqa: E402
from recsys.evaluation import metrics  # noqa: E402
from recsys.evaluation.splits import kfold_splits  # noqa: E402
from recsys.models.blend import BlendRecommender  # noqa: E402

DEFAULT_PATH = ROOT / ".." / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
MIN_RMSE_GAIN = 0.025
MAX_FIT_SECONDS = 120.0


def surprise_models(seed: int) -> dict:
    """Return Surprise's models to compare, by the name the table prints."""
    return {
        "SVD": lambda: SVD(random_state=seed),
        "SVD++": lambda: SVDpp(random_state=seed, cache_ratings=True),
        "KNNBaseline": lambda: KNNBaseline(verbose=False),
        "KNNBaseline item": lambda: KNNBaseline(
            sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_rating.py", record=args.record)
    if not args.path.is_file():
        print(f"skipped: no MovieLens ratings at {args.path}")
        verdicts.not_run("blend RMSE vs Surprise's SVD", f"no MovieLens ratings at {args.path}")
        return verdicts.finish()
    dataset = load_dataset(args.path)
    reader = Reader(
        line_format="user item rating timestamp",
        sep=",",
        skip_lines=1,
        rating_scale=dataset.rating_scale,
    )
    theirs = KFold(n_splits=args.folds, random_state=args.seed).split(
        SurpriseDataset.load_from_file(str(args.path), reader=reader)
    )
    models = surprise_models(args.seed)
    names = [*models, "blend"]
    print(
        f"{args.path.parent.name}: {len(dataset.feedback):,} ratings; {args.folds}-fold, "
        f"seed {args.seed}; RMSE per fold (fit seconds: wall for Surprise's, CPU for the blend)"
    )
    print(f"  {'fold':<6}" + "".join(f"{name:>22}" for name in names))
    rmse: dict[str, list[float]] = {name: [] for name in names}
    fit: dict[str, list[float]] = {name: [] for name in names}
    wall: list[float] = []
    load: list[float] = []
    for split, (trainset, testset) in zip(
        kfold_splits(dataset.feedback, args.folds, args.seed), theirs, strict=True
    ):
        pairs = zip(split.test["user_id"].tolist(), split.test["product_id"].tolist(), strict=True)
        ours = set(pairs)
        if ours != {(int(u), int(i)) for u, i, _ in testset}:
            raise SystemExit(f"fold {split.index}: the test pairs differ from Surprise's")
        for name, make in models.items():
            started = time.perf_counter()
            algo = make().fit(trainset)
            fit[name].append(time.perf_counter() - started)
            rmse[name].append(accuracy.rmse(algo.test(testset), verbose=False))
        started, cpu_started = time.perf_counter(), time.process_time()
        blend = BlendRecommender(rating_scale=dataset.rating_scale).fit(split.train)
        fit["blend"].append(time.process_time() - cpu_started)
        wall.append(time.perf_counter() - started)
        load.append(os.getloadavg()[0])
        test = split.test
        predicted = blend.predict(test["user_id"].to_numpy(), test["product_id"].to_numpy())
        rmse["blend"].append(metrics.rmse(predicted, test["rating"].to_numpy()))
        cells = [f"{rmse[n][-1]:.4f} ({fit[n][-1]:5.1f} s)" for n in names]
        print(f"  {split.index:<6}" + "".join(f"{cell:>22}" for cell in cells), flush=True)
    print(
        "blend fit, wall seconds per fold: "
        + ", ".join(f"{seconds:.1f}" for seconds in wall)
        + "; load average (1 min) after each: "
        + ", ".join(f"{value:.1f}" for value in load)
    )
    means = {name: statistics.fmean(values) for name, values in rmse.items()}
    print(f"  {'mean':<6}" + "".join(f"{means[n]:>22.4f}" for n in names))
    gain = means["SVD"] - means["blend"]
    print(
        f"blend: {gain:.4f} below Surprise's SVD, {means['SVD++'] - means['blend']:.4f} below "
        f"SVD++, {means['KNNBaseline'] - means['blend']:.4f} below KNNBaseline "
        f"({blend.validation_rows:,} validation rows carved from the last fold's training part)"
    )
    verdicts.check(
        f"blend mean RMSE >= {MIN_RMSE_GAIN} below Surprise's SVD",
        f"{gain:.4f}",
        gain >= MIN_RMSE_GAIN,
    )
    slowest = max(fit["blend"])
    verdicts.check(
        f"blend fit per fold < {MAX_FIT_SECONDS:.0f} s (CPU, slowest fold)",
        f"{slowest:.1f} s",
        slowest < MAX_FIT_SECONDS,
    )
    verdicts.inform("blend fit per fold, wall time (slowest fold)", f"{max(wall):.1f} s")
    for name in ("SVD", "SVD++", "KNNBaseline", "KNNBaseline item"):
        verdicts.inform(f"mean RMSE of Surprise's {name}", f"{means[name]:.4f}")
    verdicts.inform("mean RMSE of the blend", f"{means['blend']:.4f}")
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
