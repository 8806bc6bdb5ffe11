"""Benchmark on MovieLens ml-latest-small: SVD parity with Surprise, ALS vs popularity, speed.

Usage: python bench/bench_movielens.py [PATH] [--seed S] [--record FILE]

PATH defaults to ../shared/datasets/ml-latest-small/ratings.csv relative to the
repository root. Prints each figure, the ratio behind each target, and PASS or
FAIL; exits 1 if any target fails.

(a) 5-fold RMSE of our SVD (Surprise's default hyper-parameters) against
    Surprise used directly (``Dataset.load_from_file`` + ``KFold`` +
    ``SVD().fit`` + ``accuracy.rmse``) with the same seed and folds; and the fit
    time of our ``SVDRecommender.fit`` (data frame -> Surprise trainset -> SGD
    -> factors copied out) over Surprise's own ``SVD.fit`` on the fold's
    trainset (the fit time ``cross_validate`` reports), folds interleaved so
    machine load hits both alike; Surprise's trainset build plus fit is shown
    for context.
(b) NDCG@10 of ALS (default hyper-parameters) over popularity's, per-user
    20% holdout, relevant = rating >= 4, training items excluded.
(c) Wall time of top-10 for every user, training items excluded, per model
    (median of 3 runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from surprise import SVD, Reader, accuracy  # noqa: E402
from surprise import Dataset as SurpriseDataset  # noqa: E402
from surprise.model_selection import KFold  # noqa: E402
from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.loaders import load_dataset  # noqa: E402
from recsys.evaluation import metrics  # noqa: E402
from recsys.evaluation.evaluate import evaluate  # noqa: E402
from recsys.evaluation.model_params import model_factory  # noqa: E402
from recsys.evaluation.splits import kfold_splits, products_by_user  # noqa: E402
from recsys.models.svd import SVDRecommender  # noqa: E402

DEFAULT_PATH = REPO / ".." / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
RMSE_TOLERANCE = 0.002
MAX_FIT_TIME_RATIO = 1.10
MIN_NDCG_RATIO = 1.5
MAX_TOP10_SECONDS = 1.0


def surprise_default_svd(seed: int, rating_scale: tuple[float, float]) -> SVDRecommender:
    """Return our SVD with Surprise's default hyper-parameters (for a like-for-like check)."""
    return SVDRecommender(
        n_factors=100,
        n_epochs=20,
        lr_all=0.005,
        reg_all=0.02,
        init_std_dev=0.1,
        random_state=seed,
        rating_scale=rating_scale,
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench_svd_parity(path: Path, dataset, folds: int, seed: int, verdicts: Verdicts) -> bool:
    print(f"(a) SVD, Surprise defaults, {folds}-fold CV, seed {seed}")
    reader = Reader(
        line_format="user item rating timestamp",
        sep=",",
        skip_lines=1,
        rating_scale=dataset.rating_scale,
    )
    data = SurpriseDataset.load_from_file(str(path), reader=reader)
    theirs = KFold(n_splits=folds, random_state=seed).split(data)
    ours = kfold_splits(dataset.feedback, folds, seed)
    rows = []
    for fold, split in enumerate(ours):
        start = time.perf_counter()
        trainset, testset = next(theirs)  # Surprise builds the fold's trainset here
        surprise_build = time.perf_counter() - start
        algo = SVD(random_state=seed)
        start = time.perf_counter()
        algo.fit(trainset)
        surprise_fit = time.perf_counter() - start
        surprise_rmse = accuracy.rmse(algo.test(testset), verbose=False)

        model = surprise_default_svd(seed, dataset.rating_scale)
        start = time.perf_counter()
        model.fit(split.train)
        our_fit = time.perf_counter() - start
        test = split.test
        predicted = model.predict(test["user_id"].to_numpy(), test["product_id"].to_numpy())
        our_rmse = metrics.rmse(predicted, test["rating"].to_numpy())
        rows.append((surprise_rmse, our_rmse, surprise_fit, surprise_build, our_fit))
        print(
            f"    fold {fold}: RMSE Surprise {surprise_rmse:.4f} ours {our_rmse:.4f}; "
            f"Surprise build trainset {surprise_build:.2f} s + fit {surprise_fit:.2f} s, "
            f"our fit (trainset + SGD + factors) {our_fit:.2f} s"
        )
    surprise_rmse, our_rmse, surprise_fit, surprise_build, our_fit = (
        statistics.fmean(column) for column in zip(*rows, strict=True)
    )
    rmse_gap = abs(our_rmse - surprise_rmse)
    fit_ratio = our_fit / surprise_fit
    print(
        f"    mean RMSE: Surprise {surprise_rmse:.4f}, ours {our_rmse:.4f}, "
        f"gap {rmse_gap:.4f} (target <= {RMSE_TOLERANCE})  {verdict(rmse_gap <= RMSE_TOLERANCE)}"
    )
    print(
        f"    mean fit time: Surprise SVD.fit {surprise_fit:.2f} s, our SVDRecommender.fit "
        f"{our_fit:.2f} s, ratio {fit_ratio:.3f} (target <= {MAX_FIT_TIME_RATIO})  "
        f"{verdict(fit_ratio <= MAX_FIT_TIME_RATIO)}"
    )
    # For context: our fit starts from a data frame, so it includes building
    # the trainset, which Surprise's reported fit time leaves out.
    print(
        f"    for context: Surprise trainset build + fit {surprise_build + surprise_fit:.2f} s, "
        f"ratio {our_fit / (surprise_build + surprise_fit):.3f}"
    )
    parity = verdicts.check(
        f"(a) SVD RMSE gap to Surprise <= {RMSE_TOLERANCE}",
        f"{rmse_gap:.4f}",
        rmse_gap <= RMSE_TOLERANCE,
    )
    speed = verdicts.check(
        f"(a) SVD fit time / Surprise's <= {MAX_FIT_TIME_RATIO}",
        f"{fit_ratio:.3f}",
        fit_ratio <= MAX_FIT_TIME_RATIO,
    )
    return parity and speed


def bench_als_vs_popularity(dataset, seed: int, verdicts: Verdicts) -> bool:
    print(f"(b) ALS vs popularity, per-user 20% holdout, seed {seed}, relevant = rating >= 4")
    factories = {name: model_factory(name) for name in ("popular", "als")}
    report = evaluate(factories, dataset, "holdout", k=10, threshold=4.0, seed=seed)
    popular, als = report["models"]["popular"], report["models"]["als"]
    for name, scores in (("popular", popular), ("als", als)):
        print(
            f"    {name:8s} ndcg@10 {scores['ndcg@10']:.4f}  precision@10 "
            f"{scores['precision@10']:.4f}  recall@10 {scores['recall@10']:.4f}  "
            f"fit {scores['fit_seconds']:.2f} s"
        )
    ratio = als["ndcg@10"] / popular["ndcg@10"]
    ok = verdicts.check(
        f"(b) ALS NDCG@10 >= {MIN_NDCG_RATIO}x popularity's",
        f"{ratio:.2f}x",
        ratio >= MIN_NDCG_RATIO,
    )
    print(
        f"    NDCG@10 ratio ALS / popularity {ratio:.2f} "
        f"(target >= {MIN_NDCG_RATIO})  {verdict(ok)}"
    )
    return ok


def bench_top10_speed(dataset, seed: int, verdicts: Verdicts) -> bool:
    feedback = dataset.feedback
    users = sorted(feedback["user_id"].unique().tolist())
    seen = products_by_user(feedback)
    print(f"(c) top-10 for all {len(users)} users, their rated items excluded (median of 3)")
    models = {
        "popular": model_factory("popular")(),
        "svd": surprise_default_svd(seed, dataset.rating_scale),
        "als": model_factory("als")(),
    }
    all_ok = True
    for name, model in models.items():
        model.fit(feedback)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            batch = model.recommend(users, 10, exclude=seen)
            timings.append(time.perf_counter() - start)
        assert len(batch.lists) == len(users)
        seconds = statistics.median(timings)
        ok = verdicts.check(
            f"(c) {name} top-10 for every user < {MAX_TOP10_SECONDS} s",
            f"{seconds:.3f} s",
            seconds < MAX_TOP10_SECONDS,
        )
        all_ok &= ok
        print(f"    {name:8s} {seconds:.3f} s (target < {MAX_TOP10_SECONDS} s)  {verdict(ok)}")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    add_record_option(parser)
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(
            f"MovieLens ratings not found at {args.path}; pass the path of "
            "ml-latest-small/ratings.csv as the first argument",
            file=sys.stderr,
        )
        return 2
    verdicts = Verdicts("bench_movielens.py", record=args.record)
    start = time.perf_counter()
    dataset = load_dataset(args.path)
    print(
        f"loaded {args.path.name}: {len(dataset.feedback)} ratings, "
        f"{dataset.feedback['user_id'].nunique()} users, "
        f"{dataset.feedback['product_id'].nunique()} movies in {time.perf_counter() - start:.2f} s"
    )
    bench_svd_parity(args.path, dataset, args.folds, args.seed, verdicts)
    bench_als_vs_popularity(dataset, args.seed, verdicts)
    bench_top10_speed(dataset, args.seed, verdicts)
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
