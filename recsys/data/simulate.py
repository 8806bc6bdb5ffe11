"""Simulate a shop: a Faker catalog and users, and their clicks and purchases.

Behaviour is meant to be learnable, like a real shop's:

- each user has a latent taste over categories (a Dirichlet draw, so most
  users love one or two categories) and a price sensitivity;
- product popularity is long-tailed (Zipf weights over a random order);
- a user discovers products with probability proportional to popularity x
  taste for their category, and comes back to them more often the more they
  like the category;
- a click becomes a purchase with a probability that rises with the user's
  taste for the category and falls with price x price sensitivity.

The same seed gives byte-identical output for the pinned Faker and numpy
versions; the bundled ``interactions.csv`` and ``products.csv`` are the output
for ``DEFAULT_SEED`` (``recommendation_system.py generate --out interactions.csv``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from faker import Faker

from recsys.data.interactions import EVENT_TYPES

DEFAULT_SEED = 42
DEFAULT_USERS = 100
DEFAULT_PRODUCTS = 20

CATEGORY_NOUNS = {
    "Electronics": ("Headphones", "Speaker", "Charger", "Keyboard", "Webcam", "Smartwatch"),
    "Books": ("Novel", "Cookbook", "Atlas", "Biography", "Poetry Book", "Travel Guide"),
    "Home": ("Lamp", "Cushion", "Kettle", "Vase", "Blanket", "Clock"),
    "Sports": ("Yoga Mat", "Dumbbell", "Water Bottle", "Running Cap", "Jump Rope", "Backpack"),
    "Beauty": ("Face Cream", "Perfume", "Lip Balm", "Shampoo", "Hand Soap", "Nail Polish"),
}
CATEGORIES = tuple(CATEGORY_NOUNS)

# Median price per category, in the shop's currency.
_CATEGORY_PRICE = {"Electronics": 60.0, "Books": 15.0, "Home": 30.0, "Sports": 25.0, "Beauty": 18.0}


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulated shop.

    Attributes:
        users: Number of users.
        products: Number of products in the catalog.
        seed: Seed of every random draw (Faker and numpy).
        mean_products_per_user: Average number of distinct products a user clicks.
        revisit_rate: Mean extra clicks on a product of the user's favourite
            category (scaled down by taste for other categories).
        taste_concentration: Dirichlet concentration of category taste;
            lower means more focused users.
        popularity_exponent: Zipf exponent of product popularity.
        taste_strength: How strongly taste steers clicks (exponent on taste).
        view_rate: Mean views of each product a user clicks, before the
            clicks (Poisson). 0, the default, emits none: the log is the
            clicks and purchases it always was (the bundled log's shape).
        cart_rate: Chance that a purchase is preceded by a cart addition;
            a click that ends in no purchase gets one (an abandoned cart)
            with a fifth of that chance. 0 by default.
    """

    users: int = DEFAULT_USERS
    products: int = DEFAULT_PRODUCTS
    seed: int = DEFAULT_SEED
    mean_products_per_user: float = 10.0
    revisit_rate: float = 4.0
    taste_concentration: float = 0.3
    popularity_exponent: float = 2.0
    taste_strength: float = 1.5
    view_rate: float = 0.0
    cart_rate: float = 0.0

    def __post_init__(self) -> None:
        if not self.view_rate >= 0:
            raise ValueError(f"view_rate must be a number >= 0, got {self.view_rate}")
        if not 0 <= self.cart_rate <= 1:
            raise ValueError(f"cart_rate must be from 0 to 1, got {self.cart_rate}")
        if self.users < 1:
            raise ValueError(f"users must be at least 1, got {self.users}")
        if self.products < 1:
            raise ValueError(f"products must be at least 1, got {self.products}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")


@dataclass(frozen=True)
class SimulatedShop:
    """Everything the simulator makes.

    Attributes:
        catalog: ``product_id, name, category, price``.
        users: ``user_id, name, email, city``.
        interactions: ``user_id, product_clicked, purchased``, one row per click.
        taste: Users x categories matrix of latent taste (rows sum to 1),
            rows in ``users`` order, columns in ``CATEGORIES`` order.
        popularity: Latent popularity weight per product, in catalog order.
    """

    catalog: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    taste: np.ndarray
    popularity: np.ndarray


def make_catalog(config: SimulationConfig, fake: Faker, rng: np.random.Generator) -> pd.DataFrame:
    """Return a catalog of product-like names, categories and prices."""
    categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(config.products)]
    rng.shuffle(categories)
    names: list[str] = []
    seen: set[str] = set()
    for category in categories:
        name = _unique_product_name(category, fake, seen)
        seen.add(name)
        names.append(name)
    medians = np.array([_CATEGORY_PRICE[c] for c in categories])
    prices = np.round(medians * rng.lognormal(mean=0.0, sigma=0.5, size=config.products), 2)
    return pd.DataFrame(
        {
            "product_id": np.arange(1, config.products + 1, dtype=np.int64),
            "name": names,
            "category": categories,
            "price": prices,
        }
    )


def _unique_product_name(category: str, fake: Faker, taken: set[str]) -> str:
    # Colour x noun gives 6 nouns x ~140 colours per category; retrying on a
    # clash keeps names unique without Faker's global unique-state.
    while True:
        name = f"{fake.safe_color_name().title()} {fake.random_element(CATEGORY_NOUNS[category])}"
        if name not in taken:
            return name


def make_users(config: SimulationConfig, fake: Faker) -> pd.DataFrame:
    """Return Faker profiles: name, email and city per user."""
    rows = [
        {"user_id": i, "name": fake.name(), "email": fake.email(), "city": fake.city()}
        for i in range(1, config.users + 1)
    ]
    return pd.DataFrame(rows, columns=["user_id", "name", "email", "city"])


@dataclass(frozen=True)
class LatentTastes:
    """The truth behind a simulated shop's behaviour (arrays in catalog and user order).

    Attributes:
        product_category: Each product's category index into ``CATEGORIES``.
        popularity: Latent popularity weight per product (Zipf over a random order).
        taste: Users x categories matrix of latent taste (rows sum to 1).
        price_sensitivity: Per user, how strongly price lowers buying.
        log_price: Per product, ln(price / the catalog median): > 0 for dearer ones.
    """

    product_category: np.ndarray
    popularity: np.ndarray
    taste: np.ndarray
    price_sensitivity: np.ndarray
    log_price: np.ndarray


def draw_latent_tastes(
    config: SimulationConfig, catalog: pd.DataFrame, rng: np.random.Generator
) -> LatentTastes:
    """Draw popularity, tastes and price sensitivities, in the order every simulator uses.

    The small simulator and the large one share this, so both have one taste
    model (and the small one's output stays the same for a seed).
    """
    category_index = {c: i for i, c in enumerate(CATEGORIES)}
    product_category = catalog["category"].map(category_index).to_numpy()
    popularity = 1.0 / np.arange(1, config.products + 1) ** config.popularity_exponent
    popularity = rng.permutation(popularity)
    taste = rng.dirichlet(np.full(len(CATEGORIES), config.taste_concentration), size=config.users)
    price_sensitivity = rng.uniform(0.3, 1.5, size=config.users)
    log_price = np.log(catalog["price"].to_numpy() / np.median(catalog["price"].to_numpy()))
    return LatentTastes(product_category, popularity, taste, price_sensitivity, log_price)


def simulate_shop(config: SimulationConfig | None = None, progress: bool = False) -> SimulatedShop:
    """Simulate a catalog, users and their click/purchase log.

    Args:
        config: The shop's knobs; defaults to 100 users, 20 products, seed 42.
        progress: Show a progress bar over users on stderr (when it is a terminal).

    Returns:
        The catalog, users, interactions and the latent truth behind them.
    """
    config = config or SimulationConfig()
    fake = Faker("en_US")
    fake.seed_instance(config.seed)
    rng = np.random.default_rng(config.seed)

    catalog = make_catalog(config, fake, rng)
    users = make_users(config, fake)

    latent = draw_latent_tastes(config, catalog, rng)
    product_category, popularity, taste = latent.product_category, latent.popularity, latent.taste
    price_sensitivity, log_price = latent.price_sensitivity, latent.log_price

    visits_per_user = np.minimum(
        config.products, 1 + rng.poisson(config.mean_products_per_user - 1, size=config.users)
    )
    rows_user, rows_product, rows_purchased = [], [], []
    for u in _users_loop(config.users, progress):
        affinity = taste[u, product_category] / taste[u].max()
        weights = popularity * (affinity + 0.05) ** config.taste_strength
        # Discovery: popular products and liked categories are found first.
        visited = rng.choice(
            config.products, size=visits_per_user[u], replace=False, p=weights / weights.sum()
        )
        # Users come back to products they like: repeat clicks grow with taste.
        clicks = 1 + rng.poisson(config.revisit_rate * affinity[visited])
        clicked = np.repeat(visited, clicks)
        # Logistic purchase model: taste raises, price x sensitivity lowers.
        logit = -4.0 + 3.5 * affinity[clicked] - 1.2 * price_sensitivity[u] * log_price[clicked]
        bought = rng.random(len(clicked)) < 1.0 / (1.0 + np.exp(-logit))
        rows_user.append(np.full(len(clicked), u + 1))
        rows_product.append(clicked + 1)
        rows_purchased.append(bought.astype(np.int64))

    interactions = pd.DataFrame(
        {
            "user_id": np.concatenate(rows_user).astype(np.int64),
            "product_clicked": np.concatenate(rows_product).astype(np.int64),
            "purchased": np.concatenate(rows_purchased).astype(np.int64),
        }
    )
    if config.view_rate or config.cart_rate:
        interactions = with_views_and_carts(interactions, config)
    return SimulatedShop(
        catalog=catalog, users=users, interactions=interactions, taste=taste, popularity=popularity
    )


def with_views_and_carts(clicks: pd.DataFrame, config: SimulationConfig) -> pd.DataFrame:
    """Add views before each user's clicks and cart additions, as ``SimulationConfig`` says.

    Drawn from a generator of their own, so the clicks and purchases are those
    of the same config without views and carts. The log gains a ``type`` column.
    """
    rng = np.random.default_rng([config.seed, 1])
    pairs = clicks.drop_duplicates(["user_id", "product_clicked"])
    views = pairs.loc[pairs.index.repeat(rng.poisson(config.view_rate, len(pairs)))]
    bought = clicks["purchased"].to_numpy() == 1
    chance = np.where(bought, config.cart_rate, config.cart_rate / 5)
    carts = clicks[rng.random(len(clicks)) < chance]
    parts = [
        views.assign(purchased=0, type="view"),
        clicks.assign(type=np.where(bought, "purchase", "click")),
        carts.assign(purchased=0, type="cart"),
    ]
    # Per user: views, then clicks and purchases, then carts (a stable sort keeps that order).
    log = pd.concat(parts, ignore_index=True).sort_values("user_id", kind="stable")
    log["type"] = pd.Categorical(log["type"], categories=EVENT_TYPES)
    return log.reset_index(drop=True)


def _users_loop(users: int, progress: bool) -> Iterable[int]:
    if not progress:
        return range(users)
    # Imported here: importing the pipeline should not pay for tqdm.
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, pipes, tests).
    return tqdm(range(users), desc="simulating", unit="user", disable=None)
