"""Writing files whole, and the folders they go in, with the system's reason when it fails."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from recsys.errors import OutputFileError


def make_writable_dir(path: Path) -> None:
    """Create a folder if it is missing, and check that this process can make files in it.

    Raises:
        OSError: With the system's reason; a path that is a file is "Not a
            directory" (mkdir would say "File exists", which reads as if
            nothing were wrong).
    """
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


@contextlib.contextmanager
def whole_file(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` to write; rename it to ``path`` when the block ends.

    Readers never see half a file, and a failed write leaves nothing.

    Raises:
        OutputFileError: Writing or renaming failed (its folder missing,
            read-only or a file; the disk full), named by ``path``.
    """
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    except OSError as exc:
        raise OutputFileError(path, exc) from None
    finally:
        # Never there when its folder is not: that must not hide why the write failed.
        with contextlib.suppress(OSError):
            partial.unlink()
