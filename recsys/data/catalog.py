"""Catalog files: ``product_id,name,category,price``, one product a line.

A log comes with its catalog, named after it: ``generate --out big.csv``
writes ``big.products.csv`` beside it, so a generated shop never replaces
another's catalog (the bundled ``interactions.csv`` and ``products.csv``
above all). Every reader of a log (eda, the service's first start, ``train
--data``) looks for ``NAME.products.csv`` beside it, then for a plain
``products.csv`` (the bundled pair's name); without either, products are
shown by id, never with invented names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import (
    ID_RULE,
    MAX_ID,
    csv_header,
    read_csv_cells,
    read_data_file,
)
from recsys.errors import DataFileError, quote

CATALOG_COLUMNS = ("product_id", "name", "category", "price")
CATALOG_FILE = "products.csv"
# The highest price a product may have: revenue sums stay finite and exact to the cent.
MAX_PRICE = 1_000_000_000


def catalog_path_for(log_path: str | Path) -> Path:
    """Return where a log's own catalog goes: ``big.csv`` -> ``big.products.csv``."""
    log = Path(log_path)
    return log.with_name(f"{log.stem}.{CATALOG_FILE}")


def catalog_beside(log_path: str | Path) -> Path | None:
    """Return the catalog next to a log file, if there is one.

    The log's own (``NAME.products.csv``) comes first, then a plain
    ``products.csv`` in the same folder, as the bundled log has.
    """
    for candidate in (catalog_path_for(log_path), Path(log_path).with_name(CATALOG_FILE)):
        if candidate.is_file():
            return candidate
    return None


def load_catalog(path: str | Path) -> pd.DataFrame:
    """Read and validate a catalog file.

    Args:
        path: A CSV with the header ``product_id,name,category,price``.

    Returns:
        The catalog, one row per product, in file order.

    Raises:
        DataFileError: The file is missing, unreadable, or a line breaks the
            schema (ids positive and unique, names non-empty, prices >= 0).
    """
    path = Path(path)
    text = read_data_file(path)
    header = csv_header(text)
    if header != list(CATALOG_COLUMNS):
        raise DataFileError(
            path,
            f"expected the header {','.join(CATALOG_COLUMNS)}, got {quote(','.join(header))}",
            line=1,
        )
    raw = read_csv_cells(path, text)
    if raw.empty:
        raise DataFileError(path, "the file has a header but no products", line=2)
    seen: dict[int, int] = {}
    rows = []
    for index, record in enumerate(raw.itertuples(index=False)):
        line = index + 2  # line 1 is the header
        text_id, name, category, text_price = record
        if not any(record):
            raise DataFileError(path, f"blank line; expected {','.join(CATALOG_COLUMNS)}", line)
        if not (text_id.isascii() and text_id.isdigit() and 1 <= int(text_id) <= MAX_ID):
            raise DataFileError(path, f"product_id must be {ID_RULE}, got {quote(text_id)}", line)
        product_id = int(text_id)
        if product_id in seen:
            raise DataFileError(
                path, f"product_id {product_id} repeats line {seen[product_id]}", line
            )
        seen[product_id] = line
        if not name or not category:
            raise DataFileError(path, "name and category must not be empty", line)
        try:
            price = float(text_price)
        except ValueError:
            price = float("nan")
        if not np.isfinite(price) or not 0 <= price <= MAX_PRICE:
            raise DataFileError(
                path,
                f"price must be a number from 0 to {MAX_PRICE}, got {quote(text_price)}",
                line,
            )
        rows.append((product_id, name, category, price))
    return pd.DataFrame(rows, columns=list(CATALOG_COLUMNS)).astype(
        {"product_id": "int64", "price": "float64"}
    )


def write_catalog(catalog: pd.DataFrame, path: str | Path) -> None:
    """Write a catalog as CSV with Unix line endings."""
    catalog.loc[:, list(CATALOG_COLUMNS)].to_csv(path, index=False, lineterminator="\n")


def catalog_for_log(log: pd.DataFrame, catalog_path: str | Path | None) -> pd.DataFrame:
    """Return a catalog that covers every product of a log.

    Args:
        log: An interactions frame (``product_clicked`` column).
        catalog_path: Its catalog file, or None.

    Returns:
        The file's products plus, for any product of the log it lacks, a row
        with no name, category or price (shown by id).
    """
    known = load_catalog(catalog_path) if catalog_path is not None else None
    ids = np.unique(log["product_clicked"].to_numpy(dtype=np.int64))
    if known is not None:
        ids = np.setdiff1d(ids, known["product_id"].to_numpy())
    unnamed = pd.DataFrame(
        {"product_id": ids, "name": None, "category": None, "price": np.nan}
    ).astype({"product_id": "int64", "price": "float64"})
    if known is None:
        return unnamed
    return pd.concat([known, unnamed], ignore_index=True) if len(unnamed) else known
