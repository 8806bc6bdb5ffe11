"""The interaction log: its schema, loading it with validation, and reading data files.

The log has one row per click: ``user_id, product_clicked, purchased`` with
positive integer ids and ``purchased`` 0 or 1, optionally followed by a
``timestamp`` that follows ``recsys.data.timestamps.TIMESTAMP_RULE`` (the
rule of the API). ``load_interactions`` checks a file against that schema and
raises ``DataFileError`` naming the file, the line and the problem.

Every data file of the project (logs, MovieLens ratings, catalogs, parameter
files) is read through ``read_data_file``, so one problem is worded one way
everywhere: "file not found", "cannot read the file: <reason>", "not UTF-8
text", "the file is empty"; offending values are quoted with
``recsys.errors.quote``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from recsys.data.timestamps import (
    EARLIEST,
    ISO_WITH_OFFSET,
    MAX_AHEAD,
    TIMESTAMP_RULE,
    utc_now,
)
from recsys.errors import DataFileError, quote

INTERACTION_COLUMNS = ("user_id", "product_clicked", "purchased")
# An optional fourth column: when the click happened (TIMESTAMP_RULE; empty = unknown).
TIMESTAMP_COLUMN = "timestamp"
MAX_ID = 2**63 - 1
# What every id column of every data file accepts, in the words of the errors.
ID_RULE = f"an integer from 1 to {MAX_ID}"


def read_data_file(path: Path) -> str:
    """Return the text of a data file (UTF-8, a byte-order mark allowed).

    Args:
        path: The file.

    Returns:
        Its text, with at least one non-blank character.

    Raises:
        DataFileError: "file not found", "cannot read the file: <reason>",
            "not UTF-8 text" (with the line of the first bad byte) or "the
            file is empty" (nothing but white space).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as exc:
        # strerror ("Is a directory") without the errno and the path the message already names.
        raise DataFileError(path, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFileError(path, "not UTF-8 text", line=line) from None
    if not text.strip():
        raise DataFileError(path, "the file is empty", line=1)
    return text


def csv_header(text: str) -> list[str]:
    """Return the first line of CSV text as stripped column names."""
    return [name.strip() for name in next(csv.reader(io.StringIO(text)), [])]


def read_csv_cells(path: Path, text: str) -> pd.DataFrame:
    """Parse CSV text into stripped text cells, so checks see what the file says.

    Blank lines are kept as rows of empty cells, so data row i is file line
    i + 2 (line 1 is the header); a short line has empty cells at its end.

    Args:
        path: The file the text came from (for errors).
        text: Its text, as ``read_data_file`` returns it.

    Raises:
        DataFileError: A line has more fields than the header.
    """
    try:
        raw = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False
        )
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            expected, line, saw = (int(g) for g in found.groups())
            raise DataFileError(
                path, f"expected {expected} fields, found {saw}", line=line
            ) from None
        raise DataFileError(path, f"malformed CSV: {str(exc).strip()}") from None
    if not isinstance(raw.index, pd.RangeIndex):
        # pandas takes the extra leading fields of line 2 as an index rather than failing.
        fields = len(raw.columns)
        raise DataFileError(
            path, f"expected {fields} fields, found {fields + raw.index.nlevels}", line=2
        )
    raw.columns = [name.strip() for name in raw.columns]
    return pd.DataFrame({name: raw[name].str.strip() for name in raw.columns})


def load_interactions(path: str | Path) -> pd.DataFrame:
    """Read and validate an interactions CSV.

    Args:
        path: A CSV file with the header ``user_id,product_clicked,purchased``,
            optionally followed by ``timestamp`` (``TIMESTAMP_RULE``; empty
            allowed, meaning unknown).

    Returns:
        A frame with those three int64 columns in file order, plus a
        ``timestamp`` column (naive UTC, NaT where empty) when the file has one.

    Raises:
        DataFileError: The file is missing, unreadable, empty, or breaks the
            schema; the message names the file, the line and the problem.
    """
    path = Path(path)
    text = read_data_file(path)
    _check_header(path, csv_header(text))
    cells = read_csv_cells(path, text)
    if cells.empty:
        raise DataFileError(path, "the file has a header but no interactions", line=2)
    columns = {name: cells[name] for name in cells.columns}
    timestamps = None
    if TIMESTAMP_COLUMN in columns:
        timestamps = _parse_timestamps(columns[TIMESTAMP_COLUMN])
    _raise_first_bad_row(path, columns, timestamps)
    frame = pd.DataFrame({c: columns[c].astype(np.int64) for c in INTERACTION_COLUMNS})
    if timestamps is not None:
        frame[TIMESTAMP_COLUMN] = timestamps
    return frame


def _parse_timestamps(text: pd.Series) -> pd.Series:
    """Return naive-UTC datetimes where a cell follows TIMESTAMP_RULE, NaT elsewhere.

    The vectorised twin of ``recsys.data.timestamps.parse_timestamp``: the same
    pattern (a date, a time and an offset), the same conversion to UTC and the
    same range, so a file and the API accept the same values.
    """
    well_formed = text.str.fullmatch(ISO_WITH_OFFSET.pattern).fillna(False).astype(bool)
    # pandas reads "Z" but not "z"; nothing else the pattern allows changes case.
    parsed = pd.to_datetime(
        text.where(well_formed).str.upper(), utc=True, format="ISO8601", errors="coerce"
    ).dt.tz_convert(None)
    in_range = parsed.between(pd.Timestamp(EARLIEST), pd.Timestamp(utc_now() + MAX_AHEAD))
    return parsed.where(in_range).astype("datetime64[ns]")


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
            raise DataFileError(path, f"purchased must be 0 or 1, got {quote(value)}", line)
        if c == TIMESTAMP_COLUMN:
            raise DataFileError(
                path, f"timestamp must be {TIMESTAMP_RULE}, got {quote(value)}", line
            )
        raise DataFileError(path, f"{c} must be {ID_RULE}, got {quote(value)}", line)


def _check_header(path: Path, header: list[str]) -> None:
    expected = list(INTERACTION_COLUMNS)
    if header in (expected, [*expected, TIMESTAMP_COLUMN]):
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in (*expected, TIMESTAMP_COLUMN)]
    if missing:
        problem = f"missing column(s) {quote(missing)}"
    elif extra:
        problem = f"unexpected column(s) {quote(extra)}"
    else:
        problem = f"columns out of order: {quote(header)}"
    raise DataFileError(
        path,
        f"{problem}; expected the header {','.join(expected)} (optionally ,{TIMESTAMP_COLUMN})",
        line=1,
    )


def write_interactions(frame: pd.DataFrame, path: str | Path | TextIO) -> None:
    """Write an interactions frame as CSV with Unix line endings."""
    frame.loc[:, list(INTERACTION_COLUMNS)].to_csv(path, index=False, lineterminator="\n")
