"""New arrivals: a lift for the products that appeared late in the training log.

A customer coming back after months has not seen what arrived meanwhile,
and what arrived is what the others are taking up now; a model learnt from
the whole log ranks those products low, having few events of theirs. It is
what ml-latest-small's global time split asks (train before a moment, test
the users active on both sides of it, most of them back after months away),
where ALS with this lift, chosen on validation, is the best model
(``bench/bench_quality.py``).

A product is new when its first event in the training rows is at most
``days`` before the rows' last event. A row's first event is its
``first_timestamp`` when the frame has one (``derive_ratings`` keeps both
ends of each pair's events), else its ``timestamp``: a log of one event per
pair, such as MovieLens' ratings. Its lift is::

    lift = arrival_lift + uptake_lift * uptake
    uptake = log(1 + users per 30 days since its first event)

(a feedback frame has one row per user and product; the days since its
first event count as at least 30, so a product of one day is not judged on
one day's users); every other product's lift is 0.
A user's score row ``s`` is ranked as ``s + std(s) * lift``, which orders as
the user's standardised scores ``(s - mean(s)) / std(s)`` plus the lift: a
lift of 1 moves a product up by one standard deviation of that user's
scores, whatever the scale of the model's scores.

The lift is the same for every user and fixed by the training rows, so a
retrain is what moves the window on. A log imported without timestamps has
every event stamped with the import's time, so its products all appear at
once: within the window they are lifted alike, apart from ``uptake_lift``,
which then favours the most popular.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.models.profile import epoch_seconds

ARRIVAL_PARAMS = ("arrival_days", "arrival_lift", "uptake_lift")
_DAY = 86_400.0
# Uptake counts events per this many days, and never over fewer.
_UPTAKE_DAYS = 30.0


def arrival_facts(
    first: pd.Series, last: pd.Series, items: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return each product's (days since its first event, uptake) at the rows' last event.

    Args:
        first: When each training row's pair began (its first event).
        last: Each row's latest event (the training rows end at the latest);
            ``first`` itself when each pair has one event, read once then.
        items: Each row's inner item index.
        n_items: The number of products.

    Returns:
        Two float64 arrays over the products: the age in days (from the
        product's first event to the last event of all) and its uptake,
        log(1 + rows, one per user, per 30 days of that age, at least 30).
    """
    first_seconds = epoch_seconds(first)
    end = float((first_seconds if last is first else epoch_seconds(last)).max())
    began = np.full(n_items, end)
    np.minimum.at(began, items, first_seconds.astype(np.float64))
    age_days = (end - began) / _DAY
    rows = np.bincount(items, minlength=n_items).astype(np.float64)
    uptake = np.log1p(rows * _UPTAKE_DAYS / np.maximum(age_days, _UPTAKE_DAYS))
    return age_days, uptake


def arrival_lifts(
    age_days: np.ndarray,
    uptake: np.ndarray,
    days: float,
    arrival_lift: float,
    uptake_lift: float,
) -> np.ndarray | None:
    """Return each product's lift (float32), or None when no product is lifted.

    Args:
        age_days: Days since each product's first event (``arrival_facts``).
        uptake: Each product's uptake (``arrival_facts``).
        days: Products at most this old are new (0: none).
        arrival_lift: The lift of every new product.
        uptake_lift: The lift per unit of a new product's uptake.
    """
    if days <= 0:
        return None
    lifts = np.where(age_days <= days, arrival_lift + uptake_lift * uptake, 0.0)
    return lifts.astype(np.float32) if lifts.any() else None


def lifted(scores: np.ndarray, lifts: np.ndarray | None) -> np.ndarray:
    """Return score rows raised by ``lifts`` in standard deviations of each row.

    Args:
        scores: One row (n_items,) or rows (n_users, n_items), float32.
        lifts: Each product's lift, or None (the rows are returned as they are).
    """
    if lifts is None:
        return scores
    spread = scores.std(axis=-1, keepdims=True)
    # A row of equal scores says nothing of the user: the lift alone orders it.
    spread[spread == 0] = 1.0
    return scores + spread * lifts
