"""Exceptions the project raises on purpose, and how their messages quote input."""

from __future__ import annotations

import os
from pathlib import Path


class RecsysError(Exception):
    """Base class of every error the project raises on purpose."""


class OutputFileError(RecsysError):
    """A file or folder cannot be written: a folder missing or read-only, or the disk full.

    Args:
        path: What was to be written (a file's own name, not its temporary one).
        exc: What the operating system said.
        what: Said before the path ("the model directory ").
    """

    def __init__(self, path: str | Path, exc: OSError, what: str = ""):
        self.path = str(path)
        # The reason alone: pyarrow's messages name the temporary file, not the one asked for.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        super().__init__(f"cannot write {what}{path}: {reason}")


class DataFileError(RecsysError, ValueError):
    """A data file is unreadable or breaks its schema.

    Args:
        path: The file that was read.
        problem: What is wrong, in words a user can act on.
        line: The 1-based line of the file where the problem is, when known
            (line 1 is the header of a CSV file).
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.problem = problem
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


# Error messages echo what the caller sent; a cap keeps a megabyte of junk out
# of responses and logs.
MAX_ECHO_CHARS = 100


# Texts longer than this are cut before repr: a gigabyte line would need
# gigabytes more to be written out whole, only to be capped.
_LONGEST_TEXT_WRITTEN = 1 << 16


def quote(value: object) -> str:
    """Return ``repr(value)`` capped at ``MAX_ECHO_CHARS`` characters, for error messages."""
    shortened, cut = _shortened(value)
    text = repr(shortened)
    if cut:
        return f"{text[: MAX_ECHO_CHARS - 3]}... (more than {_LONGEST_TEXT_WRITTEN} characters)"
    if len(text) <= MAX_ECHO_CHARS:
        return text
    return f"{text[: MAX_ECHO_CHARS - 3]}... ({len(text)} characters)"


def _shortened(value: object) -> tuple[object, bool]:
    """Return the value with its long texts cut (in lists and tuples too), and whether any was."""
    if isinstance(value, str | bytes) and len(value) > _LONGEST_TEXT_WRITTEN:
        return value[:_LONGEST_TEXT_WRITTEN], True
    if isinstance(value, list | tuple):
        items = [_shortened(item) for item in value]
        if any(cut for _, cut in items):
            return type(value)(item for item, _ in items), True
    return value, False
