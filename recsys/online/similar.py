"""Products like a given one: the live model's neighbours, or its category's best sellers.

A model with the SIMILAR_ITEMS capability (SVD, ALS) ranks products by the
cosine of their learned item vectors. When it cannot (a popularity model), or
when it was trained before the product appeared, the answer is the most
clicked products of the product's category, with a ``fallback_reason``. The
product itself is never listed, nor is an unavailable product. The catalog is
the live version's (refreshed when products are written), so the answer needs
no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.errors import RecsysError
from recsys.models.base import SIMILAR_ITEMS
from recsys.models.ranked import lookup_ids
from recsys.online.service import NOT_IN_MODEL, RecommendedProduct, ServingModel

# Why the neighbours are the category's most clicked products.
NO_ITEM_SIMILARITY = "no_item_similarity"  # the live model cannot compare products


class UnknownProductError(RecsysError, LookupError):
    """The product is not in the catalog."""

    def __init__(self, product_id: int):
        self.product_id = product_id
        super().__init__(f"product_id {product_id} is not in the catalog")


@dataclass(frozen=True)
class SimilarAnswer:
    """A product's neighbours, best first, and how they were found."""

    product_id: int
    strategy: str
    recommendations: list[RecommendedProduct]
    model_version: str
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of the answer."""
        body: dict[str, Any] = {"product_id": self.product_id, "strategy": self.strategy}
        if self.fallback_reason is not None:
            body["fallback_reason"] = self.fallback_reason
        body["model_version"] = self.model_version
        body["recommendations"] = [item.to_dict() for item in self.recommendations]
        return body


def similar_products(version: ServingModel, product_id: int, n: int) -> SimilarAnswer:
    """Return the n products most like one product, never the product itself.

    Args:
        version: The live version (read once by the caller).
        product_id: A catalog product.
        n: How many products.

    Raises:
        UnknownProductError: The product is not in the catalog.
    """
    if product_id not in version.names:
        raise UnknownProductError(product_id)
    model = version.model
    can_compare = SIMILAR_ITEMS in model.capabilities
    if can_compare and lookup_ids(model.product_ids, np.array([product_id]))[1][0]:
        ranked = model.similar_items(product_id, n, exclude=version.hidden_ids)
        return SimilarAnswer(product_id, model.name, version.describe(ranked), version.version)
    category = version.names[product_id][1]
    popularity = version.popularity
    # A product without a category gets the most clicked products of all.
    elsewhere = {
        int(other)
        for other in popularity.product_ids
        if category is not None and version.names.get(int(other), (None, None))[1] != category
    }
    ranked = popularity.top(n, exclude=frozenset(elsewhere | {product_id}) | version.hidden)
    return SimilarAnswer(
        product_id,
        popularity.name,
        version.describe(ranked),
        version.version,
        fallback_reason=NOT_IN_MODEL if can_compare else NO_ITEM_SIMILARITY,
    )
