"""Load real feedback logs (MovieLens or our interactions CSV) into a ``Dataset``.

Supported formats:

- MovieLens ``u.data``: tab-separated ``user item rating timestamp``, no header.
- MovieLens ``ratings.csv``: ``userId,movieId,rating,timestamp`` with that header.
- Our interactions CSV (``user_id,product_clicked,purchased[,timestamp]``),
  read by ``recsys.data.interactions.load_interactions`` and turned into
  ratings by ``recsys.data.ratings.derive_ratings``.

MovieLens ratings are explicit: each becomes one feedback row with
``clicks = 1``, ``engagement = rating`` and ``rating = rating``, timestamp kept.
Files are read with ``recsys.data.interactions.read_data_file`` (the shared
words for unreadable files), parsed with pandas and validated with vectorised
checks; the first bad line is reported as a ``DataFileError`` naming the file,
the line and the problem.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.interactions import ID_RULE, csv_header, load_interactions, read_data_file
from recsys.data.ratings import RATING_SCALE, EventWeights, derive_ratings
from recsys.errors import DataFileError, quote

FORMATS = ("auto", "interactions", "movielens")
DEFAULT_RELEVANCE_THRESHOLD = 4.0

MOVIELENS_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
MOVIELENS_RATING_RANGE = (0.5, 5.0)
# u.data (ml-100k) has whole stars only.
UDATA_RATING_RANGE = (1.0, 5.0)
INTERACTIONS_FIRST_COLUMN = "user_id"


@dataclass(frozen=True)
class Dataset:
    """A feedback frame plus what an evaluation needs to know about it.

    Attributes:
        name: A short label (the file name, or "simulated").
        feedback: One row per (user, product): user_id, product_id, clicks,
            engagement, rating, and timestamp when the source has one.
        explicit_ratings: True when ratings were given by users (MovieLens),
            False when derived from clicks and purchases.
        rating_scale: The lowest and highest possible rating.
        source_format: "movielens-csv", "movielens-udata", "interactions" or "simulated".
        path: The file read, if any.
    """

    name: str
    feedback: pd.DataFrame
    explicit_ratings: bool
    rating_scale: tuple[float, float]
    source_format: str
    path: str | None = None

    @property
    def has_timestamps(self) -> bool:
        """Return whether every row carries a timestamp."""
        return "timestamp" in self.feedback.columns and bool(
            self.feedback["timestamp"].notna().all()
        )

    def summary(self) -> dict[str, Any]:
        """Return JSON-able facts about the data (for reports)."""
        return {
            "name": self.name,
            "path": self.path,
            "format": self.source_format,
            "rows": len(self.feedback),
            "users": int(self.feedback["user_id"].nunique()),
            "products": int(self.feedback["product_id"].nunique()),
            "explicit_ratings": self.explicit_ratings,
            "rating_scale": list(self.rating_scale),
            "has_timestamps": self.has_timestamps,
        }


def relevant_mask(feedback: pd.DataFrame, threshold: float = DEFAULT_RELEVANCE_THRESHOLD):
    """Return a boolean Series: which rows count as relevant for ranking metrics.

    Args:
        feedback: A feedback frame.
        threshold: A row is relevant when its rating is at least this.
    """
    return feedback["rating"] >= threshold


def load_dataset(
    path: str | Path,
    file_format: str = "auto",
    weights: EventWeights | None = None,
) -> Dataset:
    """Read a feedback log in one of the supported formats.

    Args:
        path: The file to read.
        file_format: "auto" (detect from the first line), "interactions" or
            "movielens" (either MovieLens layout, detected).
        weights: For interactions files: the points of each event type
            that make the derived rating and the engagement ALS uses (see
            ``recsys.data.ratings.EventWeights``); ignored for MovieLens.

    Returns:
        The dataset.

    Raises:
        DataFileError: The file is unreadable, empty, of an unknown layout or
            breaks its format; the message names the file and line.
        ValueError: ``file_format`` is not one of ``FORMATS``.
    """
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; expected one of {', '.join(FORMATS)}")
    path = Path(path)
    text = read_data_file(path)
    detected = detect_format(path, text.partition("\n")[0])
    if file_format == "movielens" and detected == "interactions":
        raise DataFileError(
            path, "expected a MovieLens file but line 1 is an interactions header", line=1
        )
    if file_format == "interactions" or detected == "interactions":
        return _load_interactions(path, weights)
    return _load_movielens(path, text, detected)


def simulated_dataset(feedback: pd.DataFrame, name: str = "simulated") -> Dataset:
    """Wrap the feedback frame derived from a simulated click log as a ``Dataset``.

    Args:
        feedback: Output of ``recsys.data.ratings.derive_ratings``.
        name: A label for reports.
    """
    return Dataset(
        name=name,
        feedback=feedback,
        explicit_ratings=False,
        rating_scale=RATING_SCALE,
        source_format="simulated",
    )


def detect_format(path: str | Path, first_line: str) -> str:
    """Return "movielens-udata", "movielens-csv" or "interactions" from a file's first line.

    Args:
        path: The file (for the error message).
        first_line: Its first line.

    Raises:
        DataFileError: The first line fits none of the formats.
    """
    first_line = first_line.rstrip("\r")
    if "\t" in first_line:
        return "movielens-udata"
    first_field = csv_header(first_line)[0]
    if first_field == MOVIELENS_CSV_HEADER[0]:
        return "movielens-csv"
    if first_field == INTERACTIONS_FIRST_COLUMN:
        return "interactions"
    raise DataFileError(
        path,
        "cannot tell the format: expected a tab-separated MovieLens u.data line, the "
        f"header {','.join(MOVIELENS_CSV_HEADER)} or an interactions header starting with "
        f"user_id, got {quote(first_line)}",
        line=1,
    )


def _load_interactions(path: Path, weights: EventWeights | None) -> Dataset:
    feedback = derive_ratings(load_interactions(path), weights)
    return Dataset(
        name=path.name,
        feedback=feedback,
        explicit_ratings=False,
        rating_scale=RATING_SCALE,
        source_format="interactions",
        path=str(path),
    )


def _load_movielens(path: Path, text: str, layout: str) -> Dataset:
    has_header = layout == "movielens-csv"
    scale = MOVIELENS_RATING_RANGE if has_header else UDATA_RATING_RANGE
    if has_header:
        _check_csv_header(path, text.partition("\n")[0].rstrip("\r"))
    # Fast path: let pandas parse numbers directly; only when something is
    # wrong is the file re-read as text to find and name the first bad line.
    feedback = _parse_clean_movielens(text, has_header, scale)
    if feedback is None:
        _raise_first_problem(path, text, has_header, scale)
    return Dataset(
        name=path.name,
        feedback=feedback,
        explicit_ratings=True,
        rating_scale=scale,
        source_format=layout,
        path=str(path),
    )


def _check_csv_header(path: Path, header: str) -> None:
    if tuple(csv_header(header)) != MOVIELENS_CSV_HEADER:
        raise DataFileError(
            path,
            f"expected the header {','.join(MOVIELENS_CSV_HEADER)}, got {quote(header)}",
            line=1,
        )


def _read_movielens_csv(text: str, has_header: bool, **options: Any) -> pd.DataFrame:
    return pd.read_csv(
        io.StringIO(text),
        sep="," if has_header else "\t",
        header=0 if has_header else None,
        names=list(MOVIELENS_CSV_HEADER),
        skip_blank_lines=True,
        **options,
    )


def _parse_clean_movielens(
    text: str, has_header: bool, scale: tuple[float, float]
) -> pd.DataFrame | None:
    """Return the feedback frame of a well-formed file, or None if anything is off."""
    try:
        raw = _read_movielens_csv(text, has_header)
    except (pd.errors.ParserError, ValueError):
        return None
    if raw.empty or not all(pd.api.types.is_numeric_dtype(raw[c]) for c in MOVIELENS_CSV_HEADER):
        return None
    if any(mask.any() for mask, _, _ in _value_checks(raw, scale)):
        return None
    feedback = _feedback_from_columns(raw)
    if feedback.duplicated(["user_id", "product_id"]).any():
        return None
    return feedback


def _raise_first_problem(
    path: Path, text: str, has_header: bool, scale: tuple[float, float]
) -> None:
    """Find the first bad line of a file the fast path rejected, and raise for it."""
    sep = "," if has_header else "\t"
    lines = pd.Series(text.split("\n")).str.rstrip("\r")
    if text.endswith("\n"):
        lines = lines.iloc[:-1]
    body = lines.iloc[1:] if has_header else lines
    blank = body == ""
    field_counts = body.str.count(sep) + 1
    expected_fields = len(MOVIELENS_CSV_HEADER)
    wrong = ~blank & (field_counts != expected_fields)
    if wrong.any():
        where = wrong.idxmax()
        raise DataFileError(
            path,
            f"expected {expected_fields} {'comma' if has_header else 'tab'}-separated fields, "
            f"found {field_counts[where]}",
            line=where + 1,
        )
    # Line numbers are 1-based; the index of ``lines`` is 0-based and counts the header.
    line_numbers = body.index[~blank].to_numpy() + 1
    if len(line_numbers) == 0:
        raise DataFileError(path, "the file has a header but no ratings", line=2)
    raw = _read_movielens_csv(text, has_header, dtype=str, na_filter=False)
    columns = pd.DataFrame(
        {name: pd.to_numeric(raw[name], errors="coerce") for name in MOVIELENS_CSV_HEADER}
    )
    bad = np.logical_or.reduce([mask.to_numpy() for mask, _, _ in _value_checks(columns, scale)])
    if bad.any():
        row = int(np.argmax(bad))
        # Report the first problem on the earliest bad line, in column order.
        for mask, column, accepted in _value_checks(columns.iloc[[row]], scale):
            if mask.iloc[0]:
                raise DataFileError(
                    path,
                    f"{column} must be {accepted}, got {quote(raw[column].iloc[row])}",
                    line=int(line_numbers[row]),
                )
    _raise_first_repeat(path, _feedback_from_columns(columns), line_numbers)


def _value_checks(
    columns: pd.DataFrame, rating_range: tuple[float, float]
) -> list[tuple[pd.Series, str, str]]:
    """Return (mask of bad rows, column, what is accepted) for each value rule."""
    low, high = rating_range
    rating = columns["rating"]
    return [
        (_not_positive_integer(columns["userId"]), "userId", ID_RULE),
        (_not_positive_integer(columns["movieId"]), "movieId", ID_RULE),
        (~rating.between(low, high), "rating", f"a number from {low:g} to {high:g}"),
        (_not_timestamp(columns["timestamp"]), "timestamp", "a non-negative integer"),
    ]


def _feedback_from_columns(columns: pd.DataFrame) -> pd.DataFrame:
    rating = columns["rating"].to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {
            "user_id": columns["userId"].to_numpy(dtype=np.int64),
            "product_id": columns["movieId"].to_numpy(dtype=np.int64),
            "clicks": np.ones(len(columns), dtype=np.int64),
            "engagement": rating,
            "rating": rating.copy(),
            "timestamp": columns["timestamp"].to_numpy(dtype=np.int64),
        }
    )


def _raise_first_repeat(path: Path, feedback: pd.DataFrame, line_numbers: np.ndarray) -> None:
    repeated = feedback.duplicated(["user_id", "product_id"], keep="first").to_numpy()
    if not repeated.any():
        raise AssertionError(f"{path}: rejected by the fast parser but no problem found")
    row = int(np.argmax(repeated))
    user, product = feedback["user_id"].iloc[row], feedback["product_id"].iloc[row]
    first = int(
        np.argmax(
            (feedback["user_id"].to_numpy() == user)
            & (feedback["product_id"].to_numpy() == product)
        )
    )
    raise DataFileError(
        path,
        f"user {user} rated movie {product} again (first on line {line_numbers[first]}); "
        "expected one rating per pair",
        line=int(line_numbers[row]),
    )


def _not_positive_integer(values: pd.Series) -> pd.Series:
    # Ids become int64, so anything beyond its range is rejected too.
    return values.isna() | (values <= 0) | (values >= 2**63) | (values != np.floor(values))


def _not_timestamp(values: pd.Series) -> pd.Series:
    return values.isna() | (values < 0) | (values != np.floor(values))
