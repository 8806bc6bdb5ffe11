"""Benchmark of recommendation quality: every model on MovieLens and the simulated shop.

Usage: python bench/bench_quality.py [PATH] [--seed S] [--k K] [--record FILE]

PATH defaults to ../shared/datasets/ml-latest-small/ratings.csv relative to the
repository root; when it is absent, MovieLens is skipped with a message and
only the simulated shop is measured. Each data set is scored exactly as
``recommendation_system.py evaluate --models all`` scores it (per-user 20%
holdout, relevant = rating >= 4, training items excluded), one table row per
model, then the targets with PASS or FAIL; exits 1 if any target fails:

- every personal model (SVD included) at or above popularity's NDCG@k, on
  each data set;
- on MovieLens, the best model's NDCG@k at least 1.9x popularity's (aim 2.0x);
- on MovieLens, EASE fits in under 30 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from recsys.data.loaders import Dataset, load_dataset, simulated_dataset  # noqa: E402
from recsys.data.ratings import derive_ratings  # noqa: E402
from recsys.data.simulate import SimulationConfig, simulate_shop  # noqa: E402
from recsys.evaluation.evaluate import evaluate  # noqa: E402
from recsys.evaluation.model_params import model_factory  # noqa: E402
from recsys.models import MODELS  # noqa: E402

DEFAULT_PATH = REPO / ".." / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
MIN_BEST_RATIO = 1.9
AIM_BEST_RATIO = 2.0
MAX_EASE_FIT_SECONDS = 30.0
COLUMNS = (
    ("precision", "precision@{k}"),
    ("recall", "recall@{k}"),
    ("ndcg", "ndcg@{k}"),
    ("map", "map@{k}"),
    ("hit_rate", "hit_rate@{k}"),
    ("coverage", "coverage"),
    ("novelty", "novelty"),
    ("diversity", "diversity"),
    ("pop_bias", "popularity_bias"),
    ("fit_s", "fit_seconds"),
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(models: dict[str, dict[str, float]], k: int) -> str:
    header = ["model", *(label for label, _ in COLUMNS)]
    rows = [
        [
            name,
            *(f"{scores[key.format(k=k)]:.4f}" for _, key in COLUMNS[:-1]),
            f"{scores['fit_seconds']:.2f}",
        ]
        for name, scores in models.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "    " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def bench(dataset: Dataset, seed: int, k: int, movielens: bool, verdicts: Verdicts) -> bool:
    factories = {name: model_factory(name, rating_scale=dataset.rating_scale) for name in MODELS}
    report = evaluate(factories, dataset, "holdout", k=k, threshold=4.0, seed=seed)
    models = report["models"]
    summary = report["dataset"]
    print(
        f"{summary['name']}: {summary['rows']} rows, {summary['users']} users, "
        f"{summary['products']} products; holdout, seed {seed}, k {k}"
    )
    print(table(models, k))
    ndcg = f"ndcg@{k}"
    popular = models["popular"][ndcg]
    results = []
    for name, scores in models.items():
        if name == "popular":
            continue
        ok = verdicts.check(
            f"{summary['name']}: {name} {ndcg} >= popular's",
            f"{scores[ndcg] / popular:.2f}x",
            scores[ndcg] >= popular,
        )
        results.append(ok)
        print(
            f"    {name} {ndcg} {scores[ndcg]:.4f} vs popular {popular:.4f} "
            f"(ratio {scores[ndcg] / popular:.2f}, target >= 1.00)  {verdict(ok)}"
        )
    if movielens:
        best = max(models, key=lambda name: models[name][ndcg])
        ratio = models[best][ndcg] / popular
        ok = verdicts.check(
            f"{summary['name']}: best model ({best}) {ndcg} >= {MIN_BEST_RATIO}x popular's",
            f"{ratio:.2f}x",
            ratio >= MIN_BEST_RATIO,
        )
        results.append(ok)
        aim = "aim met" if ratio >= AIM_BEST_RATIO else f"aim {AIM_BEST_RATIO} not met"
        print(
            f"    best model {best}: {ratio:.2f}x popular's {ndcg} "
            f"(target >= {MIN_BEST_RATIO}, {aim})  {verdict(ok)}"
        )
        seconds = models["ease"]["fit_seconds"]
        ok = verdicts.check(
            f"{summary['name']}: ease fits in < {MAX_EASE_FIT_SECONDS:g} s",
            f"{seconds:.1f} s",
            seconds < MAX_EASE_FIT_SECONDS,
        )
        results.append(ok)
        print(f"    ease fit {seconds:.1f} s (target < {MAX_EASE_FIT_SECONDS:g} s)  {verdict(ok)}")
    return all(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    add_record_option(parser)
    args = parser.parse_args(argv)
    verdicts = Verdicts("bench_quality.py", record=args.record)
    if args.path.is_file():
        bench(load_dataset(args.path), args.seed, args.k, True, verdicts)
    else:
        verdicts.not_run("MovieLens targets", f"no ratings file at {args.path}")
        print(
            f"skipping MovieLens: no ratings file at {args.path} (pass the path of "
            "ml-latest-small/ratings.csv as the first argument)"
        )
    shop = simulate_shop(SimulationConfig())
    simulated = simulated_dataset(derive_ratings(shop.interactions))
    bench(simulated, args.seed, args.k, False, verdicts)
    return verdicts.finish()


if __name__ == "__main__":
    sys.exit(main())
