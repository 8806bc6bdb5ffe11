"""/similar on real data: neighbours of popular MovieLens films share their genres.

Needs ml-latest-small: ``RECSYS_MOVIELENS`` names its ratings.csv, else it is
looked for in ``shared/datasets`` beside the project's folder. Skipped without
it, since tests must pass on a machine that lacks it, unless
``RECSYS_REQUIRE_MOVIELENS=1`` (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from recsys.evaluation.neighbours import label_agreement
from tests.builders import ROOT

RATINGS = Path(
    os.environ.get(
        "RECSYS_MOVIELENS", ROOT.parent / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"
    )
)


def test_pairs_share_a_label_when_any_of_their_labels_match():
    labels = {1: frozenset({"Comedy", "Drama"}), 2: frozenset({"Drama"}), 3: frozenset({"War"})}
    assert label_agreement({1: [2, 3], 3: [4]}, labels) == pytest.approx(1 / 3)
    assert label_agreement({}, labels) != label_agreement({}, labels)  # NaN: no pairs


@pytest.fixture
def movielens_ratings() -> Path:
    """Return ml-latest-small's ratings.csv; skip (or, when required, fail) without it."""
    if not RATINGS.is_file():
        reason = f"no MovieLens ratings at {RATINGS} (set RECSYS_MOVIELENS to its ratings.csv)"
        if os.environ.get("RECSYS_REQUIRE_MOVIELENS") == "1":
            pytest.fail(f"{reason} (RECSYS_REQUIRE_MOVIELENS=1 makes MovieLens mandatory)")
        pytest.skip(f"{reason}; set RECSYS_REQUIRE_MOVIELENS=1 to make this a failure")
    return RATINGS


@pytest.mark.slow
@pytest.mark.parametrize("model", ["als", "itemknn"])
def test_neighbours_of_popular_films_share_a_genre_far_more_often_than_random_films(
    tmp_path, model, movielens_ratings
):
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_similar import genre_agreement

    found = genre_agreement(movielens_ratings, model, films=30, state=tmp_path)
    assert found.strategy == model  # the model's own neighbours, not the category fallback
    assert found.agreement >= 1.5 * found.random, found
