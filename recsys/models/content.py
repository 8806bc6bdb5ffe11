"""A content model: products described by what the catalog says of them, compared by cosine.

A product the personal model never trained on has no learned factors and no
co-clicks; what the catalog knows of it is all there is. ``ContentModel``
turns each product into one vector of three TF-IDF blocks (scikit-learn's
``TfidfVectorizer``), each normalised and then weighted:

- the words of its name (``"Olive Perfume"``: a product type and a colour),
- its category, as one token,
- its price band: the catalog's price quintile within its category, so a
  cheap book and a cheap speaker are alike in price as their shops see them.

Weighting the blocks keeps one rare shared word (two products of the same
colour) from outweighing a shared category. A user is the engagement-weighted
sum of their products' vectors; ``similarity`` is the cosine of every
product to it. Nothing here reads a file or the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from recsys.models.ranked import lookup_ids

# Block weights: the category says most of what a shopper likes, the name's
# words (the product type) nearly as much, the price band a little.
NAME_WEIGHT = 0.8
CATEGORY_WEIGHT = 1.0
PRICE_WEIGHT = 0.4
PRICE_BANDS = 5
CATALOG_COLUMNS = ("product_id", "name", "category", "price")
# Padded rows are kept up to this many cells however long a row is (a small catalog).
_PADDED_MIN_CELLS = 1 << 16


@dataclass(frozen=True)
class ContentModel:
    """Products as L2-normalised content vectors, rows in ascending product id.

    Attributes:
        product_ids: Raw product ids, ascending (int64, read-only).
        vectors: One row per product (CSR); a product with no name, category
            or price has an empty row and is similar to nothing.
    """

    product_ids: np.ndarray
    vectors: sp.csr_matrix
    # Each product's stored features and weights as one row of a dense table
    # (feature 0 and weight 0 past its last): a user's rows are one gather
    # each. None when padding every row to the longest would more than double
    # the stored entries (one product with a very long name).
    row_features: np.ndarray | None = field(init=False, repr=False, compare=False)
    row_weights: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vectors = self.vectors
        lengths = np.diff(vectors.indptr)
        shape = (len(lengths), int(lengths.max(initial=0)))
        features = weights = None
        if shape[0] * shape[1] <= max(2 * vectors.nnz, _PADDED_MIN_CELLS):
            features, weights = np.zeros(shape, dtype=np.int64), np.zeros(shape)
            rows = np.repeat(np.arange(shape[0]), lengths)
            places = np.arange(vectors.nnz) - np.repeat(vectors.indptr[:-1], lengths)
            features[rows, places] = vectors.indices
            weights[rows, places] = vectors.data
        object.__setattr__(self, "row_features", features)
        object.__setattr__(self, "row_weights", weights)

    @classmethod
    def fit(cls, catalog: pd.DataFrame) -> ContentModel:
        """Describe every product of a catalog.

        Args:
            catalog: ``product_id, name, category, price``; name, category and
                price may be null or absent (a catalog saved without prices).

        Raises:
            ValueError: ``product_id`` is missing or repeated.
        """
        if "product_id" not in catalog.columns:
            raise ValueError("catalog lacks the product_id column")
        frame = catalog.reindex(columns=list(CATALOG_COLUMNS)).sort_values("product_id")
        ids = frame["product_id"].to_numpy(dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("catalog repeats a product_id")
        names = frame["name"].fillna("").astype(str).tolist()
        categories = frame["category"].fillna("").astype(str).tolist()
        bands = _price_bands(frame)
        blocks = [
            _block(names, NAME_WEIGHT, None),
            _block(categories, CATEGORY_WEIGHT, _whole_value),
            _block(bands, PRICE_WEIGHT, _whole_value),
        ]
        kept = [b for b in blocks if b is not None]
        ids.flags.writeable = False
        if not kept:  # nothing known of any product: every row empty
            return cls(ids, sp.csr_matrix((len(ids), 0)))
        return cls(ids, normalize(sp.hstack(kept).tocsr()).tocsr())

    def __len__(self) -> int:
        return len(self.product_ids)

    def taste(self, history_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Return a user as one unit vector: the engagement-weighted sum of their products'.

        Args:
            history_ids: Raw ids of the user's products (ids not in the catalog
                are ignored).
            weights: How much the user engaged with each (same length; >= 0).

        Returns:
            A dense vector over the content features; all 0 for a user with no
            product in the catalog (similar to nothing).
        """
        features = self.vectors.shape[1]
        if len(self.product_ids) == 0:
            return np.zeros(features)
        positions, found = lookup_ids(self.product_ids, np.asarray(history_ids, dtype=np.int64))
        rows, row_weights = positions[found], np.asarray(weights, dtype=np.float64)[found]
        if self.row_features is not None and self.row_weights is not None:
            # The same entries in the same order, each row's padding adding
            # exactly nothing to feature 0: the same sums, in fewer numpy calls.
            taste = np.bincount(
                self.row_features[rows].ravel(),
                weights=(self.row_weights[rows] * row_weights[:, None]).ravel(),
                minlength=features,
            )
        else:
            taste = self._summed_rows(rows, row_weights, features)
        # np.linalg.norm's own sum, without its checks (a few microseconds a call).
        norm = math.sqrt(taste.dot(taste))
        return taste / norm if norm > 0 else taste

    def _summed_rows(self, rows: np.ndarray, row_weights: np.ndarray, features: int) -> np.ndarray:
        """Return the weighted sum of some rows, from the CSR arrays themselves."""
        # scipy's row indexing costs more than the sum itself.
        indptr = self.vectors.indptr
        starts = indptr[rows]
        lengths = indptr[rows + 1] - starts
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        entries = np.arange(total) + np.repeat(starts - ends + lengths, lengths)
        return np.bincount(
            self.vectors.indices[entries],
            weights=self.vectors.data[entries] * np.repeat(row_weights, lengths),
            minlength=features,
        )

    def similarity(
        self,
        history_ids: np.ndarray,
        weights: np.ndarray,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return the cosine of products to a user who engaged with ``history_ids``.

        Args:
            history_ids: Raw ids of the user's products (see ``taste``).
            weights: How much the user engaged with each.
            rows: Positions (into ``product_ids``) of the products to score;
                None scores every product.

        Returns:
            One value from 0 to 1 per scored product.
        """
        scored = self.vectors if rows is None else self.vectors[rows]
        return cosine(scored, self.taste(history_ids, weights))


def cosine(vectors: sp.csr_matrix, taste: np.ndarray) -> np.ndarray:
    """Return the cosine (0 to 1) of unit-length product rows to a user's ``taste``."""
    return np.clip(vectors @ taste, 0.0, 1.0)


def _block(
    texts: list[str], weight: float, analyzer: Callable[[str], list[str]] | None
) -> sp.csr_matrix | None:
    """Return one TF-IDF block, rows normalised then weighted, or None when no text has a token."""
    vectorizer = TfidfVectorizer(analyzer=analyzer) if analyzer else TfidfVectorizer()
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # "empty vocabulary": a catalog without names, say
        return None
    return normalize(matrix) * weight


def _whole_value(text: str) -> list[str]:
    """Return a field as one token (a category is a label, not words), none when empty."""
    return [text.strip().lower()] if text.strip() else []


def _price_bands(frame: pd.DataFrame) -> list[str]:
    """Return each product's price quintile within its category ("" without a price)."""
    prices = pd.to_numeric(frame["price"], errors="coerce")
    groups = frame["category"].fillna("")
    # Percentile rank within the category, 0..1, cut into PRICE_BANDS bands.
    rank = prices.groupby(groups).rank(pct=True)
    band = np.minimum((rank * PRICE_BANDS).fillna(-1).to_numpy() // 1, PRICE_BANDS - 1)
    return ["" if b < 0 else f"band{int(b)}" for b in band]
