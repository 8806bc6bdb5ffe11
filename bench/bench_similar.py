"""Benchmark: do /similar's neighbours of popular films share a genre with them?

Serves MovieLens ml-latest-small the way a shop would: its ratings as
interactions (one click per rating; 4 stars or more counts as a purchase) and
its films as the catalog (title as name, first genre as category), loaded by
``flask --app app init`` into a fresh SQLite store for each model. Then asks
``GET /similar?product_id=P&n=10`` for the most-clicked films and counts the
(film, neighbour) pairs that share at least one of the film's genres
(``movies.csv`` lists up to ten per film; the models never see them), against
random neighbours drawn from the same catalog (seeded, averaged over draws).

Target: the models a shop should serve on a real catalog (als, itemknn,
ease) share a genre at least 1.5x as often as random films (the lift); svd's
lift is shown for information (its factors, learned from ratings derived
from clicks, carry no genre signal). Exits 1 if a target fails.

Usage: python bench/bench_similar.py [RATINGS] [--films 50] [--models als,svd,itemknn,ease]
       [--record FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verdicts import Verdicts, add_record_option  # noqa: E402

from app import create_app  # noqa: E402
from recsys.data.catalog import CATALOG_FILE, write_catalog  # noqa: E402
from recsys.data.eda import (  # noqa: E402
    MOVIELENS_MOVIES_FILE,
    load_eda_log,
    load_movielens_genres,
)
from recsys.data.interactions import write_interactions  # noqa: E402
from recsys.evaluation.neighbours import label_agreement, random_label_agreement  # noqa: E402

DEFAULT_RATINGS = ROOT.parent / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
NEIGHBOURS = 10
RANDOM_DRAWS = 20
MIN_LIFT = 1.5
# Models whose neighbours are judged; the others' are shown for information.
JUDGED_MODELS = ("als", "itemknn", "ease")


@dataclass(frozen=True)
class GenreAgreement:
    """What one model's /similar answers showed."""

    model: str
    strategy: str
    agreement: float
    random: float
    films: int

    @property
    def lift(self) -> float:
        return self.agreement / self.random


def shop_files(ratings: Path, directory: Path) -> Path:
    """Write the ratings as an interactions log with its catalog beside it; return the log."""
    interactions, catalog, _ = load_eda_log(ratings)
    if catalog is None:
        raise SystemExit(f"no {MOVIELENS_MOVIES_FILE} beside {ratings}")
    catalog = catalog.assign(category=catalog["category"].fillna("(no genres listed)"), price=0.0)
    log = directory / "interactions.csv"
    write_interactions(interactions, log)
    write_catalog(catalog, directory / CATALOG_FILE)
    return log


def genre_agreement(
    ratings: Path, model: str, films: int, state: Path, seed: int = 0
) -> GenreAgreement:
    """Serve the ratings with one model and measure its /similar answers' genre agreement."""
    log = shop_files(ratings, state)
    genres = load_movielens_genres(ratings.with_name(MOVIELENS_MOVIES_FILE))
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{state / f'{model}.db'}",
            "MODEL_DIR": str(state / f"models-{model}"),
            "DATA_PATH": str(log),
            "MODEL": model,
            "RATE_LIMIT": "",
            "RATE_LIMIT_INGEST": "",
            # An automatic retrain would take the CPU mid-measurement.
            "AUTO_RETRAIN": "0",
            "RATE_LIMIT_ADDRESS": "",
            "LOG_LEVEL": "WARNING",
        }
    )
    runtime = app.extensions["recsys.runtime"]
    runtime.init()
    client = app.test_client()
    popular = pd.read_csv(log)["product_clicked"].value_counts().index[:films].tolist()
    neighbours: dict[int, list[int]] = {}
    strategies = set()
    for film in popular:
        response = client.get(f"/similar?product_id={film}&n={NEIGHBOURS}")
        if response.status_code != 200:
            raise RuntimeError(f"/similar?product_id={film}: {response.get_data(as_text=True)}")
        body = response.get_json()
        strategies.add(body["strategy"])
        neighbours[int(film)] = [item["product_id"] for item in body["recommendations"]]
    runtime.close()
    rng = np.random.default_rng(seed)
    catalog_ids = sorted(genres)
    baseline = float(
        np.mean(
            [
                random_label_agreement(popular, catalog_ids, genres, NEIGHBOURS, rng)
                for _ in range(RANDOM_DRAWS)
            ]
        )
    )
    return GenreAgreement(
        model, "/".join(sorted(strategies)), label_agreement(neighbours, genres), baseline, films
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratings", nargs="?", default=str(DEFAULT_RATINGS))
    parser.add_argument("--films", type=int, default=50, help="most-clicked films asked for")
    parser.add_argument("--models", default="als,svd,itemknn,ease")
    add_record_option(parser)
    args = parser.parse_args()
    verdicts = Verdicts("bench_similar.py", record=args.record)
    ratings = Path(args.ratings)
    if not ratings.is_file():
        print(f"skipped: no MovieLens ratings at {ratings}")
        verdicts.not_run("genre lift of /similar", f"no MovieLens ratings at {ratings}")
        return verdicts.finish()
    logging.disable(logging.WARNING)
    print(
        f"/similar?n={NEIGHBOURS} for the {args.films} most-clicked films of "
        f"{ratings.parent.name}: pairs sharing a genre, against {RANDOM_DRAWS} draws of "
        "random films"
    )
    print(f"  {'model':<9}{'strategy':<10}{'share':>8}{'random':>8}{'lift':>7}")
    with tempfile.TemporaryDirectory(prefix="bench-similar-") as tmp:
        for model in args.models.split(","):
            found = genre_agreement(ratings, model, args.films, Path(tmp))
            print(
                f"  {found.model:<9}{found.strategy:<10}{found.agreement:>8.3f}"
                f"{found.random:>8.3f}{found.lift:>7.2f}"
            )
            what = f"{model}: neighbours share a genre >= {MIN_LIFT}x as often as random films"
            if model in JUDGED_MODELS:
                verdicts.check(what, f"{found.lift:.2f}x", found.lift >= MIN_LIFT)
            else:
                verdicts.inform(f"{model}: genre lift over random films", f"{found.lift:.2f}x")
    return verdicts.finish()


if __name__ == "__main__":
    raise SystemExit(main())
