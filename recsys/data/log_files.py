"""Interaction logs of any size as files: Parquet or CSV, written whole and read in chunks.

``load_interactions`` reads a whole CSV into memory, fine for the bundled log
and the API's batches; a log of ten million clicks is read here instead, one
chunk at a time, each checked with the same rules (positive integer ids,
``purchased`` 0 or 1, an optional ``timestamp``; with ``typed``, the
``type``, ``value`` and ``event_id`` columns as well). A bad value raises
``DataFileError`` naming the file and the line (CSV, header = line 1) or the
row (Parquet, first row = 1). Parquet goes through pyarrow: columnar and
compressed, it is about four times smaller than the CSV and reads in a
fraction of the time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.interactions import (
    INTERACTION_COLUMNS,
    OPTIONAL_COLUMNS,
    TIMESTAMP_COLUMN,
    _check_header,
    _frame_of_cells,
    _parse_timestamps,
    _raise_first_bad_row,
    csv_header,
    csv_parse_error,
    not_utf8,
    unreadable_file,
    write_interactions,
)
from recsys.errors import DataFileError, quote

PARQUET_SUFFIXES = (".parquet", ".pq")
DEFAULT_CHUNK_ROWS = 500_000


def is_parquet(path: str | Path) -> bool:
    """Return whether a path names a Parquet file (by its suffix)."""
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def write_log(frame: pd.DataFrame, path: str | Path) -> None:
    """Write an interactions frame as Parquet (``.parquet``/``.pq``) or CSV (anything else)."""
    if not is_parquet(path):
        write_interactions(frame, path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(INTERACTION_COLUMNS)
    if TIMESTAMP_COLUMN in frame.columns:
        columns.append(TIMESTAMP_COLUMN)
    table = pa.Table.from_pandas(frame.loc[:, columns], preserve_index=False)
    # Microseconds, the timestamps' own precision (TIMESTAMP_RULE): Spark
    # refuses Parquet's nanosecond timestamps, pandas' default unit.
    pq.write_table(
        table, path, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True
    )


@dataclass(frozen=True)
class LogChunk:
    """A validated slice of a log file.

    Attributes:
        first_row: 0-based index of the chunk's first data row in the file.
        frame: ``user_id, product_clicked, purchased`` (int64) and, when the
            file has one, ``timestamp`` (naive UTC, NaT where empty).
    """

    first_row: int
    frame: pd.DataFrame


def iter_log(
    path: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, typed: bool = False
) -> Iterator[LogChunk]:
    """Read a Parquet or CSV log in validated chunks of at most ``chunk_rows`` rows.

    Args:
        path: The log.
        chunk_rows: Rows read and checked at a time.
        typed: Accept a CSV's ``type``, ``value`` and ``event_id`` columns
            too (``load_interactions``'s rules), which the chunks then carry.
            Off, they are refused: a caller that stores clicks and purchases
            alone (the streamed import) would lose the events' types.

    Raises:
        DataFileError: The file is missing, unreadable, not UTF-8, has the
            wrong columns, or a value breaks the schema (naming the line or row).
    """
    path = Path(path)
    if is_parquet(path):
        yield from _iter_parquet(path, chunk_rows)
        return
    optional = OPTIONAL_COLUMNS if typed else (TIMESTAMP_COLUMN,)
    try:
        yield from _iter_csv(path, chunk_rows, optional)
    except OSError as exc:
        raise unreadable_file(path, exc) from None
    except UnicodeDecodeError:
        # pandas decodes by blocks; its offset is not the file's.
        with open(path, "rb") as handle:
            raise not_utf8(path, iter(lambda: handle.read(1 << 20), b"")) from None


def count_rows(path: str | Path) -> int | None:
    """Return how many data rows a Parquet file has (from its footer); None for CSV."""
    if not is_parquet(path):
        return None
    return int(_parquet_file(Path(path)).metadata.num_rows)


def _parquet_file(path: Path) -> Any:
    """Open a Parquet file (its footer); ``DataFileError`` if it is not one."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid for a non-Parquet file
        raise DataFileError(path, f"not a Parquet file: {exc}") from None


def _iter_csv(path: Path, chunk_rows: int, optional: tuple[str, ...]) -> Iterator[LogChunk]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        first_line = handle.readline()
        if not first_line.strip() and not any(line.strip() for line in handle):
            raise DataFileError(path, "the file is empty", line=1)
        _check_header(path, csv_header(first_line), optional)
        handle.seek(0)
        reader = pd.read_csv(
            handle,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            chunksize=chunk_rows,
        )
        first_row = 0
        try:
            for cells in reader:
                cells.columns = [name.strip() for name in cells.columns]
                yield LogChunk(first_row, _checked_csv_cells(path, cells, first_row))
                first_row += len(cells)
        except pd.errors.ParserError as exc:
            handle.seek(0)
            raise csv_parse_error(path, exc, handle) from None
    if first_row == 0:
        raise DataFileError(path, "the file has a header but no interactions", line=2)


def _checked_csv_cells(path: Path, cells: pd.DataFrame, first_row: int) -> pd.DataFrame:
    text = {name: cells[name].str.strip().reset_index(drop=True) for name in cells.columns}
    timestamps = None
    if TIMESTAMP_COLUMN in text:
        timestamps = _parse_timestamps(text[TIMESTAMP_COLUMN])
    try:
        _raise_first_bad_row(path, text, timestamps)
    except DataFileError as exc:
        # The check counts lines from the chunk's start; the file has rows before it.
        line = None if exc.line is None else exc.line + first_row
        raise DataFileError(path, exc.problem, line=line) from None
    return _frame_of_cells(text, timestamps)


def _iter_parquet(path: Path, chunk_rows: int) -> Iterator[LogChunk]:
    if path.exists() and not path.is_file():
        raise DataFileError(path, "not a file")
    parquet = _parquet_file(path)
    names = parquet.schema_arrow.names
    missing = [c for c in INTERACTION_COLUMNS if c not in names]
    if missing:
        raise DataFileError(
            path,
            f"missing column(s) {quote(missing)}; expected "
            f"{','.join(INTERACTION_COLUMNS)} (optionally {TIMESTAMP_COLUMN})",
        )
    columns = list(INTERACTION_COLUMNS)
    if TIMESTAMP_COLUMN in names:
        columns.append(TIMESTAMP_COLUMN)
    first_row = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        frame = batch.to_pandas()
        yield LogChunk(first_row, _checked_parquet_frame(path, frame, first_row))
        first_row += len(frame)
    if first_row == 0:
        raise DataFileError(path, "the file has no interactions")


def _checked_parquet_frame(path: Path, frame: pd.DataFrame, first_row: int) -> pd.DataFrame:
    checked = {}
    for column in INTERACTION_COLUMNS:
        values = frame[column]
        if not pd.api.types.is_integer_dtype(values.dtype):
            raise DataFileError(path, f"{column} must hold integers, not {values.dtype}")
        values = values.to_numpy(dtype=np.int64)
        bad = values < 1 if column != "purchased" else ~np.isin(values, (0, 1))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            rule = "0 or 1" if column == "purchased" else "an integer from 1"
            raise DataFileError(
                path,
                f"row {first_row + row + 1}: {column} must be {rule}, got {int(values[row])}",
            )
        checked[column] = values
    result = pd.DataFrame(checked)
    if TIMESTAMP_COLUMN in frame.columns:
        stamps = pd.to_datetime(frame[TIMESTAMP_COLUMN], utc=True, errors="coerce")
        result[TIMESTAMP_COLUMN] = stamps.dt.tz_convert(None).to_numpy()
    return result
