"""The bytes of a model artifact: its arrays archive, packed and unpacked, and synced file I/O.

The archive is one ``.npz`` of plain numeric and fixed-width text arrays (no
pickles): the model's arrays, its fallback's and the catalog at training time,
each under a prefix naming its role. Files are written and fsynced before a
version is renamed into place, and read only when they are regular files,
never through a symbolic link.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import RecsysError
from recsys.models.state import ModelState

# Array names in the archive are prefixed by the role of the model they belong to.
MODEL_PREFIX = "model."
FALLBACK_PREFIX = "fallback."
# The catalog at training time, so a server can name products while its
# database is down: numbers and fixed-width text arrays, no pickles.
CATALOG_PREFIX = "catalog."
# Column -> accepted numpy dtype kinds, and what they are in words.
CATALOG_COLUMNS = {
    "product_id": ("iu", "integers"),
    "name": ("U", "text"),
    "category": ("U", "text"),
}


class ArtifactError(RecsysError):
    """An artifact is missing, incomplete, damaged or of an unknown model type."""


def write_arrays(
    path: Path, state: ModelState, fallback: ModelState | None, catalog: pd.DataFrame | None
) -> str:
    """Write the archive of a model's arrays, its fallback's and the catalog's; return its SHA-256.

    The arrays go to the file one at a time and the digest is read back from
    it, so publishing holds no second copy of the model in memory (a million
    users' factors are 128 MB).

    Raises:
        ArtifactError: An array holds Python objects (it could not be read back without pickle).
    """
    arrays = {MODEL_PREFIX + k: np.ascontiguousarray(v) for k, v in state.arrays.items()}
    if fallback is not None:
        arrays.update(
            {FALLBACK_PREFIX + k: np.ascontiguousarray(v) for k, v in fallback.arrays.items()}
        )
    if catalog is not None:
        arrays[CATALOG_PREFIX + "product_id"] = catalog["product_id"].to_numpy(np.int64)
        for column in ("name", "category"):
            arrays[CATALOG_PREFIX + column] = np.array(
                catalog[column].fillna("").astype(str).tolist(), dtype=str
            )
    for name, array in arrays.items():
        if array.dtype.hasobject:
            raise ArtifactError(f"array {name!r} holds Python objects; artifacts store numbers")
    with open(path, "wb") as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds badly
        file.flush()
        os.fsync(file.fileno())
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def catalog_from_arrays(arrays: Mapping[str, np.ndarray]) -> pd.DataFrame | None:
    """Return the catalog saved with an artifact, or None when it holds none.

    Raises:
        ValueError: A column is missing, of the wrong type or not 1-D, or the
            columns differ in length.
    """
    if not any(name.startswith(CATALOG_PREFIX) for name in arrays):
        return None
    columns = {}
    for column, (kinds, described) in CATALOG_COLUMNS.items():
        key = CATALOG_PREFIX + column
        if key not in arrays:
            raise ValueError(f"{key} is missing")
        values = arrays[key]
        if values.dtype.kind not in kinds:
            raise ValueError(f"{key} has dtype {values.dtype}; expected {described}")
        if values.ndim != 1:
            raise ValueError(f"{key} must be 1-D, got shape {values.shape}")
        columns[column] = values
    lengths = {column: len(values) for column, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"catalog columns differ in length: {lengths}")
    frame = pd.DataFrame({c: v.tolist() for c, v in columns.items()})
    frame[["name", "category"]] = frame[["name", "category"]].replace("", None)
    return frame


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_regular_file(path: Path) -> bytes:
    """Return a file's bytes, refusing symbolic links and anything but a regular file.

    Raises:
        ArtifactError: The file is a link, not a regular file, or unreadable.
    """
    if path.is_symlink():
        raise ArtifactError(f"{path}: is a symbolic link; artifact files must be regular files")
    try:
        # O_NOFOLLOW refuses a link swapped in after the check; O_NONBLOCK
        # keeps a FIFO planted under the name from blocking the open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ArtifactError(f"{path}: not a regular file")
            return f.read()
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from None
