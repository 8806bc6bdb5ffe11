"""Every user's list in one file (``flask --app app export-recommendations``): Parquet or CSV.

The lists come from the answering pipeline a chunk of users at a time
(``recsys.online.batch``), so they are the ones ``GET /recommend`` gives
with the live model; this module only reads the users, writes the rows and
shows the progress. Memory stays bounded by the chunk: each chunk's rows
are written before the next is made. The file appears whole or not at all:
it is written under a temporary name beside the target and renamed into
place once complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from recsys.data.files import whole_file
from recsys.data.interactions import MAX_ID
from recsys.errors import DataFileError, RecsysError
from recsys.online import RecommendationAnswer, RecommendationService, recommend_users

# Users per chunk: their scores over 5,000 products take 20 MB.
CHUNK_USERS = 1_000
FORMATS = (".parquet", ".csv")

SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("rank", pa.int32()),
        ("product_id", pa.int64()),
        ("score", pa.float64()),
        ("strategy", pa.string()),
        ("fallback_reason", pa.string()),
        ("model_version", pa.string()),
    ]
)


class ExportRefusedError(RecsysError, ValueError):
    """The export cannot start: the target exists, or its format is not one of ``FORMATS``."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote.

    Attributes:
        path: The file.
        users: How many users were answered.
        rows: How many (user, product) rows the file holds.
        seconds: How long it took.
        cpu_seconds: The CPU time it took (this process's).
        model_version: The version that made the lists.
    """

    path: Path
    users: int
    rows: int
    seconds: float
    cpu_seconds: float
    model_version: str

    @property
    def users_per_minute(self) -> float:
        """Users answered a minute of wall time."""
        return self.users / self.seconds * 60 if self.seconds > 0 else float("inf")

    @property
    def users_per_cpu_minute(self) -> float:
        """Users answered a minute of CPU time (what a busy machine leaves out)."""
        return self.users / self.cpu_seconds * 60 if self.cpu_seconds > 0 else float("inf")


def check_target(out: Path, force: bool) -> None:
    """Refuse a target of another format, or one that exists unless ``force``.

    Raises:
        ExportRefusedError: Saying which and what to do.
    """
    if out.suffix.lower() not in FORMATS:
        raise ExportRefusedError(f"{out}: the file name must end in .parquet or .csv")
    if out.exists() and not force:
        raise ExportRefusedError(f"{out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ExportRefusedError(f"{out}: the folder {out.parent} does not exist")


def read_user_ids(path: Path) -> np.ndarray:
    """Return the user ids of a file: one a line, an optional ``user_id`` header, in file order.

    Raises:
        DataFileError: The file cannot be read, or a line is not an id (named
            by its 1-based number); an id listed twice is kept once.
    """
    ids: list[int] = []
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                text = line.strip()
                if not text or (number == 1 and text == "user_id"):
                    continue
                if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
                    raise DataFileError(
                        path,
                        f"not a user id (an integer from 1 to {MAX_ID}): {text[:40]!r}",
                        line=number,
                    )
                ids.append(int(text))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot be read: {exc}") from None
    _, first = np.unique(np.array(ids, dtype=np.int64), return_index=True)
    return np.array(ids, dtype=np.int64)[np.sort(first)]


def export_recommendations(
    service: RecommendationService,
    out: Path,
    n: int,
    users: np.ndarray | None = None,
    force: bool = False,
    progress: bool = False,
    chunk_users: int = CHUNK_USERS,
) -> ExportReport:
    """Write each user's n best products to a Parquet or CSV file, a chunk of users at a time.

    Args:
        service: The answering service, its live model live.
        out: The file (``.parquet`` or ``.csv``).
        n: Products per user.
        users: The users, in order; None: every user of the store, by id.
        force: Replace ``out`` if it exists.
        progress: Show a progress bar on stderr.
        chunk_users: Users per chunk.

    Returns:
        What was written.

    Raises:
        ExportRefusedError: See ``check_target``; nothing is written.
        NoLiveModelError: No version is live.
        OutputFileError: The file could not be written; nothing is left of it.
    """
    check_target(out, force)
    version = service.live.current().version
    started, cpu_started = time.perf_counter(), time.process_time()
    total = len(users) if users is not None else service.store.counts().users
    chunks = (
        _chunks(users, chunk_users) if users is not None else _store_chunks(service, chunk_users)
    )
    answered = rows = 0
    with (
        whole_file(out) as partial,
        _TableWriter(partial, out.suffix.lower()) as write,
        _progress_bar(progress, total) as bar,
    ):
        for answers in recommend_users(service, chunks, n):
            table = _table(answers)
            write(table)
            answered += len(answers)
            rows += table.num_rows
            bar.update(len(answers))
    return ExportReport(
        out,
        answered,
        rows,
        time.perf_counter() - started,
        time.process_time() - cpu_started,
        version,
    )


def _chunks(users: np.ndarray, size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(users), size):
        yield users[start : start + size].tolist()


def _store_chunks(service: RecommendationService, size: int) -> Iterator[Sequence[int]]:
    for page in service.store.user_ids():
        for start in range(0, len(page), size):
            yield page[start : start + size]


def _table(answers: list[RecommendationAnswer]) -> pa.Table:
    """Return one row per (user, listed product), ranks from 1."""
    user_ids: list[int] = []
    ranks: list[int] = []
    products: list[int] = []
    scores: list[float] = []
    strategies: list[str] = []
    reasons: list[str | None] = []
    versions: list[str] = []
    for answer in answers:
        for rank, item in enumerate(answer.recommendations, start=1):
            user_ids.append(int(answer.user_id or 0))
            ranks.append(rank)
            products.append(item.product_id)
            scores.append(item.score)
            strategies.append(answer.strategy)
            reasons.append(answer.fallback_reason)
            versions.append(answer.model_version)
    columns = [user_ids, ranks, products, scores, strategies, reasons, versions]
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA
    )


class _TableWriter:
    """A context manager giving a function that appends a table to a Parquet or CSV file."""

    def __init__(self, path: Path, suffix: str):
        self._path, self._suffix = path, suffix

    def __enter__(self):
        # Opened here, not by pyarrow: Python's errors carry the system's reason
        # (pyarrow's own, for a path it cannot open, name the temporary file).
        self._handle = open(self._path, "wb")  # closed in __exit__
        try:
            if self._suffix == ".parquet":
                self._file = pq.ParquetWriter(self._handle, SCHEMA, compression="zstd")
            else:
                self._file = pa_csv.CSVWriter(self._handle, SCHEMA)
        except BaseException:
            self._handle.close()
            raise
        return self._file.write_table

    def __exit__(self, *exc_info) -> None:
        with self._handle:
            self._file.close()
            if exc_info[0] is None:
                self._handle.flush()
                os.fsync(self._handle.fileno())


def _progress_bar(enabled: bool, total: int):
    from tqdm import tqdm  # only the command shows progress

    return tqdm(total=total, unit="users", desc="exporting", disable=not enabled)
