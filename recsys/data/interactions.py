"""The interaction log: its schema, and loading it with validation.

The log has one row per click: ``user_id, product_clicked, purchased`` with
positive integer ids and ``purchased`` 0 or 1. ``load_interactions`` checks a
file against that schema and raises ``DataFileError`` naming the file, the line
and the problem.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import DataFileError

INTERACTION_COLUMNS = ("user_id", "product_clicked", "purchased")
# An optional fourth column: when the click happened (ISO-8601; UTC if no offset).
TIMESTAMP_COLUMN = "timestamp"
MAX_ID = 2**63 - 1


def load_interactions(path: str | Path) -> pd.DataFrame:
    """Read and validate an interactions CSV.

    Args:
        path: A CSV file with the header ``user_id,product_clicked,purchased``,
            optionally followed by ``timestamp`` (ISO-8601; empty allowed).

    Returns:
        A frame with those three int64 columns in file order, plus a
        ``timestamp`` column (naive UTC, NaT where empty) when the file has one.

    Raises:
        DataFileError: The file is missing, unreadable, empty, or breaks the
            schema; the message names the file, the line and the problem.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read file ({exc})") from None
    if header is None:
        raise DataFileError(path, "file is empty; expected a header line", line=1)
    _check_header(path, [h.strip() for h in header])

    # Every cell is read as text so the checks below see exactly what the file says.
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            expected, line, saw = (int(g) for g in found.groups())
            raise DataFileError(
                path, f"expected {expected} fields, found {saw}", line=line
            ) from None
        raise DataFileError(path, f"malformed CSV: {str(exc).strip()}") from None
    if raw.empty:
        raise DataFileError(path, "file has a header but no interactions", line=2)
    raw.columns = [c.strip() for c in raw.columns]
    text = {c: raw[c].str.strip() for c in raw.columns}
    timestamps = None
    if TIMESTAMP_COLUMN in text:
        timestamps = pd.to_datetime(
            text[TIMESTAMP_COLUMN], utc=True, format="ISO8601", errors="coerce"
        ).dt.tz_convert(None)
    _raise_first_bad_row(path, text, timestamps)
    frame = pd.DataFrame({c: text[c].astype(np.int64) for c in INTERACTION_COLUMNS})
    if timestamps is not None:
        frame[TIMESTAMP_COLUMN] = timestamps
    return frame


def _raise_first_bad_row(
    path: Path, text: dict[str, pd.Series], timestamps: pd.Series | None
) -> None:
    """Raise a DataFileError for the earliest line that breaks the schema."""
    bad = {c: ~text[c].str.fullmatch(r"\d{1,19}") for c in INTERACTION_COLUMNS}
    bad["purchased"] = ~text["purchased"].isin(["0", "1"])
    for c in ("user_id", "product_clicked"):
        # 19 digits pass the regex; compare as Python ints to catch 0 and > 2^63-1.
        candidates = np.flatnonzero(~bad[c].to_numpy())
        values = text[c].to_numpy()
        out_of_range = [i for i in candidates if not 1 <= int(values[i]) <= MAX_ID]
        bad[c].iloc[out_of_range] = True
    if timestamps is not None:
        bad[TIMESTAMP_COLUMN] = timestamps.isna() & (text[TIMESTAMP_COLUMN] != "")
    any_bad = np.logical_or.reduce([mask.to_numpy() for mask in bad.values()])
    if not any_bad.any():
        return
    i = int(np.flatnonzero(any_bad)[0])
    line = i + 2  # data row 0 is file line 2: line 1 is the header
    if all(column.iloc[i] == "" for column in text.values()):
        raise DataFileError(path, "blank line; expected user_id,product_clicked,purchased", line)
    for c in bad:
        if not bad[c].iloc[i]:
            continue
        value = text[c].iloc[i]
        if value == "":
            raise DataFileError(path, f"{c} is missing", line)
        if c == "purchased":
            raise DataFileError(path, f"purchased must be 0 or 1, got {value!r}", line)
        if c == TIMESTAMP_COLUMN:
            raise DataFileError(path, f"timestamp must be ISO-8601, got {value!r}", line)
        raise DataFileError(path, f"{c} must be an integer from 1 to 2^63-1, got {value!r}", line)


def _check_header(path: Path, header: list[str]) -> None:
    expected = list(INTERACTION_COLUMNS)
    if header in (expected, [*expected, TIMESTAMP_COLUMN]):
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in (*expected, TIMESTAMP_COLUMN)]
    if missing:
        problem = f"missing column(s) {missing}"
    elif extra:
        problem = f"unexpected column(s) {extra}"
    else:
        problem = f"columns out of order: {header}"
    raise DataFileError(
        path,
        f"{problem}; expected header {','.join(expected)} (optionally ,{TIMESTAMP_COLUMN})",
        line=1,
    )


def write_interactions(frame: pd.DataFrame, path: str | Path) -> None:
    """Write an interactions frame as CSV with Unix line endings."""
    frame.loc[:, list(INTERACTION_COLUMNS)].to_csv(path, index=False, lineterminator="\n")
