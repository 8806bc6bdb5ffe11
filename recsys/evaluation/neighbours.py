"""Do a model's item neighbours make sense? Agreement of neighbours on a known attribute.

``/similar`` lists a product's nearest neighbours. Where products carry
labels the model never saw (MovieLens films' genres), neighbours that share a
label with their product more often than random products do show that the
model learned something of what the products are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def label_agreement(
    neighbours: Mapping[int, Sequence[int]], labels: Mapping[int, frozenset[str]]
) -> float:
    """Return the share of (product, neighbour) pairs that share at least one label.

    Args:
        neighbours: Product id -> its listed neighbours.
        labels: Product id -> its labels (genres); a product missing here has none.

    Returns:
        Pairs sharing a label / all pairs (NaN when there are no pairs).
    """
    shared = total = 0
    for product, listed in neighbours.items():
        own = labels.get(product, frozenset())
        for other in listed:
            total += 1
            shared += bool(own & labels.get(other, frozenset()))
    return shared / total if total else float("nan")


def random_label_agreement(
    products: Sequence[int],
    candidates: Sequence[int],
    labels: Mapping[int, frozenset[str]],
    per_product: int,
    rng: np.random.Generator,
) -> float:
    """Return ``label_agreement`` for random neighbours: the baseline a model must beat.

    Args:
        products: The products whose neighbours were listed.
        candidates: Products a neighbour may be drawn from.
        labels: Product id -> its labels.
        per_product: Random neighbours drawn per product (other than itself).
        rng: The random generator (seeded by the caller).
    """
    pool = np.asarray(candidates, dtype=np.int64)
    drawn: dict[int, list[int]] = {}
    for product in products:
        picks = rng.choice(pool[pool != product], size=per_product, replace=False)
        drawn[int(product)] = picks.tolist()
    return label_agreement(drawn, labels)
