"""Simulate a large shop (millions of events) with the small simulator's taste model.

``recsys.data.simulate`` loops over users and draws each one's products
without replacement from a catalog-sized weight vector: exact and readable,
but about 20 µs a user and a catalog-sized array per user, so a million users
over 50,000 products would take many minutes. This module draws the same
behaviour for every user at once, in numpy:

- taste over categories (Dirichlet), price sensitivity, Zipf popularity over
  a random product order, and the purchase logit are the small simulator's,
  with the same ``SimulationConfig`` knobs;
- discovery draws products with probability proportional to popularity x
  (affinity + 0.05) ** taste_strength. The weight factors into a per-user
  category weight and a per-product popularity, so a draw picks a category
  (a user x 5 table) and then a product within it (a cumulative sum per
  category and a binary search), never a user x catalog table;
- "without replacement" uses the fact that the order in which distinct
  values first appear in i.i.d. draws is a draw without replacement: each
  user gets a few times more draws than visits, and the first distinct ones
  are kept;
- the log is then thinned to exactly ``events`` rows by a uniform random
  subset (row order, grouped by user, is kept).

The random stream differs from the small simulator's, so the bundled
``interactions.csv`` (made by ``simulate_shop``) is unchanged; the shapes of
the behaviour (long tail, focused taste, purchases rising with taste) are the
same, which the tests compare. Faker names the catalog only: users are ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from faker import Faker

from recsys.data.simulate import (
    _CATEGORY_PRICE,
    CATEGORIES,
    CATEGORY_NOUNS,
    SimulationConfig,
    draw_latent_tastes,
    with_views_and_carts,
)

# Draws per wanted visit (plus a constant): enough that almost every user
# finds their distinct products even under Zipf popularity, cheap in memory.
_DRAWS_PER_VISIT = 4
_EXTRA_DRAWS = 8
# Users simulated per block: bounds the working arrays (about 30 draws a user).
_USERS_PER_BLOCK = 250_000


@dataclass(frozen=True)
class LargeSimulation:
    """What the large simulator makes.

    Attributes:
        catalog: ``product_id, name, category, price``.
        interactions: ``user_id, product_clicked, purchased`` (int64 / int8),
            one row per click, grouped by user.
        taste: Users x categories latent taste, rows in user-id order.
        popularity: Latent popularity weight per product, in catalog order.
    """

    catalog: pd.DataFrame
    interactions: pd.DataFrame
    taste: np.ndarray
    popularity: np.ndarray


def make_large_catalog(products: int, seed: int) -> pd.DataFrame:
    """Return a catalog of Faker-named products, unique names, category and price.

    Names are "<Colour> <Noun>"; the n-th repeat of a name gets " No. n", so a
    catalog of any size has unique names (the small simulator's retry loop
    runs out of colour x noun pairs past a few thousand products).

    Args:
        products: How many products.
        seed: Seeds Faker and numpy.
    """
    rng = np.random.default_rng([seed, 1])
    fake = Faker("en_US")
    fake.seed_instance(seed)
    category_index = rng.permutation(np.arange(products) % len(CATEGORIES))
    categories = np.asarray(CATEGORIES, dtype=object)[category_index]
    colours = [fake.safe_color_name().title() for _ in range(products)]
    nouns = [
        CATEGORY_NOUNS[c][i]
        for c, i in zip(categories, rng.integers(0, 6, size=products), strict=True)
    ]
    names = pd.Series([f"{colour} {noun}" for colour, noun in zip(colours, nouns, strict=True)])
    repeat = names.groupby(names).cumcount().to_numpy()
    names = names.where(repeat == 0, names + " No. " + pd.Series(repeat + 1).astype(str))
    medians = np.array([_CATEGORY_PRICE[c] for c in CATEGORIES])[category_index]
    prices = np.round(medians * rng.lognormal(mean=0.0, sigma=0.5, size=products), 2)
    return pd.DataFrame(
        {
            "product_id": np.arange(1, products + 1, dtype=np.int64),
            "name": names.to_numpy(dtype=object),
            "category": categories,
            "price": prices,
        }
    )


def simulate_large(
    config: SimulationConfig, events: int, progress: bool = False
) -> LargeSimulation:
    """Simulate ``config.users`` users clicking ``config.products`` products, ``events`` clicks.

    Args:
        config: The shop's knobs (``mean_products_per_user`` is replaced by
            what ``events`` asks for).
        events: Exactly how many clicks to return (fewer only when the users
            cannot make that many distinct visits, in a tiny catalog); views
            and cart additions (``config.view_rate``, ``cart_rate``) come on top.
        progress: Show a progress bar over user blocks on stderr (when a terminal).

    Returns:
        The catalog, the interactions and the latent truth behind them.
    """
    if events < 1:
        raise ValueError(f"events must be at least 1, got {events}")
    rng = np.random.default_rng(config.seed)
    catalog = make_large_catalog(config.products, config.seed)
    latent = draw_latent_tastes(config, catalog, rng)
    product_category, popularity, taste = latent.product_category, latent.popularity, latent.taste
    price_sensitivity, log_price = latent.price_sensitivity, latent.log_price
    # affinity[u, c] = taste[u, c] / max taste of u, as in the small simulator.
    affinity = taste / taste.max(axis=1, keepdims=True)
    sampler = _CategorySampler(product_category, popularity, len(CATEGORIES))

    def simulate_block(users: np.ndarray, mean_visits: float) -> tuple:
        return _simulate_block(
            users, mean_visits, config, affinity, price_sensitivity, log_price, sampler, rng
        )

    mean_visits = _calibrated_visits(config, events, simulate_block)
    blocks = range(0, config.users, _USERS_PER_BLOCK)
    if progress:
        from tqdm import tqdm  # imported here: only the command line shows progress

        blocks = tqdm(blocks, desc="simulating", unit="block", disable=None)
    parts = [
        simulate_block(np.arange(start, min(start + _USERS_PER_BLOCK, config.users)), mean_visits)
        for start in blocks
    ]
    users = np.concatenate([p[0] for p in parts])
    products = np.concatenate([p[1] for p in parts])
    purchased = np.concatenate([p[2] for p in parts])
    if len(users) > events:
        keep = np.sort(rng.choice(len(users), size=events, replace=False))
        users, products, purchased = users[keep], products[keep], purchased[keep]
    interactions = pd.DataFrame(
        {
            "user_id": users.astype(np.int64) + 1,
            "product_clicked": products.astype(np.int64) + 1,
            "purchased": purchased.astype(np.int8),
        }
    )
    if config.view_rate or config.cart_rate:
        interactions = with_views_and_carts(interactions, config)
    return LargeSimulation(catalog, interactions, taste, popularity)


def _calibrated_visits(
    config: SimulationConfig, events: int, simulate_block: Callable[[np.ndarray, float], tuple]
) -> float:
    """Return the mean visits per user that make a little more than ``events`` clicks.

    Pilot blocks tell how many clicks the visits asked for really make
    (repeat clicks, and users who find fewer distinct products than asked
    under a steep popularity), so the full run gives a little more than
    ``events`` clicks before thinning.
    """
    pilot_users = np.arange(min(config.users, 20_000))
    wanted_per_user = 1.1 * events / config.users
    mean_visits = wanted_per_user / (1 + config.revisit_rate / 2)
    for _ in range(3):
        pilot = simulate_block(pilot_users, mean_visits)
        clicks_per_user = max(pilot[3], 1) / len(pilot_users)
        mean_visits *= wanted_per_user / clicks_per_user
    return mean_visits


class _CategorySampler:
    """Draws products within a category with probability proportional to popularity."""

    def __init__(self, product_category: np.ndarray, popularity: np.ndarray, categories: int):
        self.category = product_category
        self.members = [np.flatnonzero(product_category == c) for c in range(categories)]
        self.cumulative = [np.cumsum(popularity[m]) for m in self.members]
        # Popularity mass of each category: the product-side factor of a draw.
        self.mass = np.array([c[-1] if len(c) else 0.0 for c in self.cumulative])

    def draw(self, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        products = np.empty(len(categories), dtype=np.int64)
        for c, (members, cumulative) in enumerate(zip(self.members, self.cumulative, strict=True)):
            where = np.flatnonzero(categories == c)
            if len(where) == 0:
                continue
            picks = np.searchsorted(cumulative, rng.random(len(where)) * cumulative[-1])
            products[where] = members[np.minimum(picks, len(members) - 1)]
        return products


def _simulate_block(
    block: np.ndarray,
    mean_visits: float,
    config: SimulationConfig,
    affinity: np.ndarray,
    price_sensitivity: np.ndarray,
    log_price: np.ndarray,
    sampler: _CategorySampler,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Return (user, product, purchased) rows of a block of users, their click and visit counts."""
    visits = np.minimum(config.products, 1 + rng.poisson(max(0.0, mean_visits - 1), len(block)))
    draws = _DRAWS_PER_VISIT * visits + _EXTRA_DRAWS
    draw_user = np.repeat(block, draws)
    # Category of each draw: weight (affinity + 0.05) ** strength x the category's popularity mass.
    weights = (affinity[block] + 0.05) ** config.taste_strength * sampler.mass
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cumulative = np.repeat(cumulative, draws, axis=0)
    category = (rng.random(len(draw_user))[:, None] > cumulative[:, :-1]).sum(axis=1)
    del cumulative
    product = sampler.draw(category, rng)

    # First appearance of each (user, product), in draw order, is a draw without replacement.
    key = draw_user.astype(np.int64) * config.products + product
    _, first = np.unique(key, return_index=True)
    first.sort()
    user, product = draw_user[first], product[first]
    # Rank of each distinct product within its user (rows stay grouped by user).
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    rank = np.arange(len(user)) - np.repeat(starts, np.diff(np.r_[starts, len(user)]))
    wanted = visits[np.searchsorted(block, user)]
    keep = rank < wanted
    user, product = user[keep], product[keep]

    user_affinity = affinity[user, sampler.category[product]]
    clicks = 1 + rng.poisson(config.revisit_rate * user_affinity)
    user, product = np.repeat(user, clicks), np.repeat(product, clicks)
    user_affinity = np.repeat(user_affinity, clicks)
    logit = -4.0 + 3.5 * user_affinity - 1.2 * price_sensitivity[user] * log_price[product]
    bought = rng.random(len(user)) < 1.0 / (1.0 + np.exp(-logit))
    return user, product, bought, len(user), int(keep.sum())
