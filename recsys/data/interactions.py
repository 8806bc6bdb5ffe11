"""The interaction log: its schema, loading it with validation, and reading data files.

The log has one row per event: ``user_id, product_clicked, purchased`` with
positive integer ids and ``purchased`` 0 or 1 (a click, or a click that ended
in a purchase), optionally followed, in any order, by a ``timestamp`` that
follows ``recsys.data.timestamps.TIMESTAMP_RULE`` (the rule of the API), the
event's ``type`` (one of ``EVENT_TYPES``; empty: click or purchase as
``purchased`` says), its ``value`` (the 1-5 stars of a ``rating``) and an
``event_id`` (what makes a second import of the file store nothing twice).
``load_interactions`` checks a file against that schema and raises
``DataFileError`` naming the file, the line and the problem.

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
from collections.abc import Iterable
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
TYPE_COLUMN = "type"
VALUE_COLUMN = "value"
EVENT_ID_COLUMN = "event_id"
# The optional columns after the three required ones, in any order.
OPTIONAL_COLUMNS = (TIMESTAMP_COLUMN, TYPE_COLUMN, VALUE_COLUMN, EVENT_ID_COLUMN)

# What a user can do with a product. The order is the codes' (a log frame's
# ``type`` column is a categorical over it); new types go at the end.
EVENT_TYPES = ("view", "click", "cart", "purchase", "rating", "dislike")
CLICK, PURCHASE, RATING, DISLIKE = (
    EVENT_TYPES.index(t) for t in ("click", "purchase", "rating", "dislike")
)
# A rating's value: whole stars.
RATING_VALUES = (1, 5)
MAX_EVENT_ID = 64
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
    except OSError as exc:
        raise unreadable_file(path, exc) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path, [data]) from None
    if not text.strip():
        raise DataFileError(path, "the file is empty", line=1)
    return text


def unreadable_file(path: Path, exc: OSError) -> DataFileError:
    """Return the error of a data file the system would not open or read.

    Args:
        path: The file.
        exc: What opening or reading it raised.

    Returns:
        "file not found", or "cannot read the file: <reason>".
    """
    if isinstance(exc, FileNotFoundError):
        return DataFileError(path, "file not found")
    # strerror ("Is a directory") without the errno and the path the message already names.
    return DataFileError(path, f"cannot read the file: {exc.strerror or exc}")


def not_utf8(path: Path, blocks: Iterable[bytes]) -> DataFileError:
    """Return the "not UTF-8 text" error naming the line of a file's first bad byte.

    Args:
        path: The file.
        blocks: Its bytes from the start, whole or in blocks (a file read
            in chunks is decoded by pieces, and the decoder's offset is the
            piece's, not the file's).

    Returns:
        The error, at the line of the first byte that is not UTF-8 (the
        last line when the file ends inside a character).
    """
    line = 1
    pending = b""
    for block in blocks:
        data = pending + block
        try:
            data.decode("utf-8")
            pending = b""
        except UnicodeDecodeError as exc:
            if exc.reason != "unexpected end of data" or exc.end != len(data):
                return DataFileError(
                    path, "not UTF-8 text", line=line + data.count(b"\n", 0, exc.start)
                )
            # A character cut by the block's end: decode it with the next block.
            pending = data[exc.start :]
            data = data[: exc.start]
        line += data.count(b"\n")
    return DataFileError(path, "not UTF-8 text", line=line)


def csv_header(text: str) -> list[str]:
    """Return the column names of CSV text: its first line's fields, stripped.

    Every reader of a data file takes its header here, whether it holds the
    whole text or only the first line of a file read in chunks, so a header
    is judged by one rule. The first line alone is read: a header is one line.

    Args:
        text: The file's text, or its first line.
    """
    first_line = text.partition("\n")[0].rstrip("\r")
    try:
        fields = next(csv.reader([first_line]), [])
    except csv.Error:
        # The csv module refuses a field longer than its limit (131,072
        # characters) or a bare carriage return. No column name is either, so
        # the commas alone split the line and the caller's check of the names
        # says what is wrong, at line 1.
        fields = first_line.split(",")
    return [name.strip() for name in fields]


def csv_parse_error(path: Path, exc: pd.errors.ParserError, text: Iterable[str]) -> DataFileError:
    """Return the error naming the file and line of CSV that pandas could not parse.

    Args:
        path: The file.
        exc: pandas' error.
        text: The file's lines again, read from the start: pandas counts
            records, and a record may span lines (a quoted field holding a
            line break), so its line is found by reading up to it.
    """
    message = str(exc).strip()
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if found:
        expected, line, saw = (int(g) for g in found.groups())
        return DataFileError(path, f"expected {expected} fields, found {saw}", line=line)
    unclosed = re.search(r"EOF inside string starting at row (\d+)", message)
    if unclosed:
        return DataFileError(
            path,
            "a quoted field starts on this line and is never closed (a stray '\"'?)",
            line=_first_line_of_record(text, int(unclosed.group(1))),
        )
    return DataFileError(path, f"malformed CSV: {message}")


def _first_line_of_record(text: Iterable[str], record: int) -> int:
    """Return the 1-based line where CSV record ``record`` (the header is record 0) starts."""
    reader = csv.reader(text)
    for _ in range(record):
        next(reader, None)
    return reader.line_num + 1


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
        raise csv_parse_error(path, exc, io.StringIO(text)) from None
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
            optionally followed, in any order, by ``timestamp``
            (``TIMESTAMP_RULE``; empty allowed, meaning unknown), ``type``
            (one of ``EVENT_TYPES``; empty: as ``purchased`` says, which may
            then be empty), ``value`` (1-5 on a rating, empty otherwise) and
            ``event_id`` (1 to 64 characters; empty: the event has none, as an
            export of a store where only some events have one writes it).

    Returns:
        A frame with those three int64 columns in file order (``purchased``
        1 exactly for a purchase), plus a ``timestamp`` column (naive UTC, NaT
        where empty), a ``type`` column (categorical over ``EVENT_TYPES``), a
        ``value`` column (int64, 0 where none) and an ``event_id`` column
        (text, None where empty) for each the file has.

    Raises:
        DataFileError: The file is missing, unreadable, empty, or breaks the
            schema; the message names the file, the line and the problem.
    """
    path = Path(path)
    text = read_data_file(path)
    _check_header(path, csv_header(text), OPTIONAL_COLUMNS)
    cells = read_csv_cells(path, text)
    if cells.empty:
        raise DataFileError(path, "the file has a header but no interactions", line=2)
    columns = {name: cells[name] for name in cells.columns}
    timestamps = None
    if TIMESTAMP_COLUMN in columns:
        timestamps = _parse_timestamps(columns[TIMESTAMP_COLUMN])
    _raise_first_bad_row(path, columns, timestamps)
    return _frame_of_cells(columns, timestamps)


def _frame_of_cells(columns: dict[str, pd.Series], timestamps: pd.Series | None) -> pd.DataFrame:
    """Return the log frame of checked cells (``load_interactions``'s columns and types).

    Args:
        columns: A log's stripped text cells by column, every row checked
            by ``_raise_first_bad_row``.
        timestamps: The parsed ``timestamp`` column, or None when there is none.
    """
    frame = pd.DataFrame({c: columns[c] for c in INTERACTION_COLUMNS[:2]}).astype(np.int64)
    if TYPE_COLUMN in columns:
        named = columns[TYPE_COLUMN]
        implied = np.where(columns["purchased"] == "1", "purchase", "click")
        codes = pd.Categorical(named.where(named != "", implied), categories=EVENT_TYPES).codes
        frame["purchased"] = (codes == PURCHASE).astype(np.int64)
        frame[TYPE_COLUMN] = pd.Categorical.from_codes(codes, categories=EVENT_TYPES)
    else:
        frame["purchased"] = columns["purchased"].astype(np.int64)
    if timestamps is not None:
        frame[TIMESTAMP_COLUMN] = timestamps
    if VALUE_COLUMN in columns:
        frame[VALUE_COLUMN] = columns[VALUE_COLUMN].replace("", "0").astype(np.int64)
    if EVENT_ID_COLUMN in columns:
        ids = columns[EVENT_ID_COLUMN]
        frame[EVENT_ID_COLUMN] = ids.astype(object).where(ids != "", None)
    return frame


def event_codes(log: pd.DataFrame) -> np.ndarray:
    """Return each event's type as its index in ``EVENT_TYPES`` (int8).

    A log without a ``type`` column holds clicks and purchases, as its
    ``purchased`` column says.
    """
    if TYPE_COLUMN in log.columns:
        types = log[TYPE_COLUMN]
        if (
            isinstance(types.dtype, pd.CategoricalDtype)
            and tuple(types.cat.categories) == EVENT_TYPES
        ):
            return types.cat.codes.to_numpy(dtype=np.int8)
        return pd.Categorical(types, categories=EVENT_TYPES).codes.astype(np.int8)
    return np.where(log["purchased"].to_numpy() != 0, PURCHASE, CLICK).astype(np.int8)


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
    bad = {c: ~text[c].str.fullmatch(r"\d{1,19}") for c in INTERACTION_COLUMNS[:2]}
    typed = TYPE_COLUMN in text
    named = text[TYPE_COLUMN] if typed else pd.Series("", index=text["user_id"].index)
    purchased = text["purchased"]
    # With a type named, purchased may be empty; when given it must agree.
    bad["purchased"] = ~(purchased.isin(["0", "1"]) | ((purchased == "") & (named != "")))
    for c in ("user_id", "product_clicked"):
        # 19 digits pass the regex; compare as Python ints to catch 0 and > 2^63-1.
        candidates = np.flatnonzero(~bad[c].to_numpy())
        values = text[c].to_numpy()
        out_of_range = [i for i in candidates if not 1 <= int(values[i]) <= MAX_ID]
        bad[c].iloc[out_of_range] = True
    if timestamps is not None:
        bad[TIMESTAMP_COLUMN] = timestamps.isna() & (text[TIMESTAMP_COLUMN] != "")
    if typed:
        contradicts = (
            (named != "") & (purchased != "") & ((purchased == "1") != (named == "purchase"))
        )
        bad[TYPE_COLUMN] = ~named.isin(["", *EVENT_TYPES]) | contradicts
    rating = named == "rating"
    if VALUE_COLUMN in text:
        value = text[VALUE_COLUMN]
        stars = value.isin([str(v) for v in range(RATING_VALUES[0], RATING_VALUES[1] + 1)])
        bad[VALUE_COLUMN] = (rating & ~stars) | (~rating & (value != ""))
    elif rating.any():
        bad[VALUE_COLUMN] = rating
    if EVENT_ID_COLUMN in text:
        ids = text[EVENT_ID_COLUMN]
        bad[EVENT_ID_COLUMN] = ids.str.len() > MAX_EVENT_ID
    any_bad = np.logical_or.reduce([mask.to_numpy() for mask in bad.values()])
    if not any_bad.any():
        return
    i = int(np.flatnonzero(any_bad)[0])
    line = i + 2  # data row 0 is file line 2: line 1 is the header
    if all(column.iloc[i] == "" for column in text.values()):
        raise DataFileError(path, "blank line; expected user_id,product_clicked,purchased", line)
    for c in bad:
        if bad[c].iloc[i]:
            raise DataFileError(path, _problem(c, text, i), line)


def _problem(column: str, text: dict[str, pd.Series], i: int) -> str:
    """Return what is wrong with a bad cell of a log (the row's first bad column)."""
    value = text[column].iloc[i] if column in text else ""
    kind = text[TYPE_COLUMN].iloc[i] if TYPE_COLUMN in text else ""
    if column == VALUE_COLUMN:
        if kind == "rating":
            low, high = RATING_VALUES
            return f"value must be {low} to {high} on a rating, got {quote(value)}"
        shown = quote(kind or "click")
        return f"value is only for a rating; type {shown} takes none, got {quote(value)}"
    if column == TYPE_COLUMN and value in EVENT_TYPES:
        purchased = text["purchased"].iloc[i]
        return f"purchased {purchased} contradicts type {quote(value)} (1 exactly for a purchase)"
    if column == TYPE_COLUMN:
        return f"type must be one of {', '.join(EVENT_TYPES)} (or empty), got {quote(value)}"
    if column == EVENT_ID_COLUMN:
        return f"event_id is {len(value)} characters long; at most {MAX_EVENT_ID}"
    if value == "":
        return f"{column} is missing"
    if column == "purchased":
        return f"purchased must be 0 or 1, got {quote(value)}"
    if column == TIMESTAMP_COLUMN:
        return f"timestamp must be {TIMESTAMP_RULE}, got {quote(value)}"
    return f"{column} must be {ID_RULE}, got {quote(value)}"


def _check_header(
    path: Path, header: list[str], optional: tuple[str, ...] = (TIMESTAMP_COLUMN,)
) -> None:
    """Check a log's header: the three columns, then any of ``optional`` once each."""
    expected = list(INTERACTION_COLUMNS)
    rest = header[len(expected) :]
    if (
        header[: len(expected)] == expected
        and all(c in optional for c in rest)
        and len(set(rest)) == len(rest)
    ):
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in (*expected, *optional)]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing:
        problem = f"missing column(s) {quote(missing)}"
    elif extra:
        problem = f"unexpected column(s) {quote(extra)}"
    elif repeated:
        problem = f"repeated column(s) {quote(repeated)}"
    else:
        problem = f"columns out of order: {quote(header)}"
    then = f"optionally followed by {','.join(optional)} in any order"
    if optional == (TIMESTAMP_COLUMN,):
        # Said, not left to guess: the other readers of a log take these columns.
        untaken = ",".join(c for c in OPTIONAL_COLUMNS if c != TIMESTAMP_COLUMN)
        then = (
            f"optionally ,{TIMESTAMP_COLUMN}; not {untaken}: this reader streams "
            "clicks and purchases alone"
        )
    raise DataFileError(path, f"{problem}; expected the header {','.join(expected)} ({then})", 1)


def write_interactions(frame: pd.DataFrame, path: str | Path | TextIO) -> None:
    """Write an interactions frame as CSV with Unix line endings.

    A frame with event types other than click and purchase keeps them in a
    ``type`` column (and its ratings in ``value``); one of clicks and
    purchases alone is written in the three columns of the bundled log.
    """
    columns = list(INTERACTION_COLUMNS)
    codes = event_codes(frame)
    if ((codes != CLICK) & (codes != PURCHASE)).any():
        columns.append(TYPE_COLUMN)
        if VALUE_COLUMN in frame.columns and (codes == RATING).any():
            columns.append(VALUE_COLUMN)
    out = frame.loc[:, columns]
    if VALUE_COLUMN in columns:
        out = out.assign(value=out[VALUE_COLUMN].where(codes == RATING).astype("Int64"))
    out.to_csv(path, index=False, lineterminator="\n")
