"""The bytes of a model artifact: its arrays archive, written and mapped, and synced file I/O.

The archive is one uncompressed ``.npz`` of plain numeric and fixed-width text
arrays (no pickles): the model's arrays, its fallback's and the catalog at
training time, each under a prefix naming its role. It is written straight to
its file, an ``.npz`` whose every array starts 64-byte aligned, and
fsynced before a version is renamed into place; an array given in blocks
(``ArrayChunks``, a cluster's user factors) is written block by block, and
checked afterwards by reading the file back block by block, so it is never
whole in memory. Loading maps
each array of the file read-only (``map_arrays``) instead of reading it:
every process that serves a version shares one copy of it, the kernel's page
cache, however many workers a machine runs. Files are opened only when they
are regular files, never through a symbolic link.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import OutputFileError, RecsysError
from recsys.models.state import ArrayChunks, ModelState, StateArray

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


class ModelDirectoryError(OutputFileError):
    """The model directory cannot be created or written (a start-up error, not a damaged model).

    Args:
        root: The directory.
        exc: What the operating system said.
    """

    def __init__(self, root: Path, exc: OSError):
        super().__init__(root, exc, what="the model directory ")


# Arrays files up to this size are checked against their whole SHA-256 at
# every load (under 0.1 s); larger ones by size and a sample of blocks, their
# whole checksum having been taken by the publisher as it wrote them.
FULL_CHECK_BYTES = 64 * 1024 * 1024
_SAMPLE_BLOCKS, _BLOCK_BYTES = 64, 64 * 1024
# Arrays written in blocks are read back for their checks this many bytes at a time.
READ_BACK_BYTES = 16 * 1024 * 1024


def _stored(array: StateArray) -> StateArray:
    return array if isinstance(array, ArrayChunks) else np.ascontiguousarray(array)


# Where each array's data starts in the archive: a multiple of this. numpy
# pads an .npy header to it; each member's local header is padded (an extra
# field, as zipalign pads) so the member starts on it too. A mapped array at an
# unaligned address is copied by every numpy operation that reads it (a
# 5,000-product SVD's item factors, 1.3 MB, on every request it answered).
ARRAY_ALIGNMENT = 64
_PADDING_FIELD = 0xD935  # the extra-field id zipalign uses for padding
# A member's local header: 30 fixed bytes, its name, its extra field (the
# padding's 4-byte header and padding, then zipfile's 20-byte zip64 field).
_LOCAL_HEADER_BYTES, _PADDING_HEADER_BYTES, _ZIP64_FIELD_BYTES = 30, 4, 20


def archive_arrays(
    state: ModelState, fallback: ModelState | None, catalog: pd.DataFrame | None
) -> dict[str, StateArray]:
    """Return the arrays an artifact stores: the model's, its fallback's and the catalog's.

    Arrays in blocks stay in blocks, to be written one block at a time.

    Raises:
        ArtifactError: An array holds Python objects (it could not be read back without pickle).
    """
    arrays = {MODEL_PREFIX + k: _stored(v) for k, v in state.all_arrays().items()}
    if fallback is not None:
        arrays.update({FALLBACK_PREFIX + k: _stored(v) for k, v in fallback.all_arrays().items()})
    if catalog is not None:
        arrays[CATALOG_PREFIX + "product_id"] = catalog["product_id"].to_numpy(np.int64)
        for column in ("name", "category"):
            arrays[CATALOG_PREFIX + column] = np.array(
                catalog[column].fillna("").astype(str).tolist(), dtype=str
            )
    for name, array in arrays.items():
        if array.dtype.hasobject:
            raise ArtifactError(f"array {name!r} holds Python objects; artifacts store numbers")
    return arrays


def check_before_publishing(
    classes: Mapping[str, Any], state: ModelState, fallback: ModelState | None
) -> None:
    """Check a model's arrays once, as loaders do (shapes, id maps, finite numbers).

    Args:
        classes: The model classes by type; a type not among them is left to the loaders.
        state: The model's state.
        fallback: Its fallback's, if any.

    Raises:
        ArtifactError: Naming the model and its first array at fault.
    """
    for role, checked in (("model", state), ("fallback model", fallback)):
        if checked is None:
            continue
        model_type = str(checked.params["model"])
        cls = classes.get(model_type)
        try:
            if cls is not None:
                cls.validate_state(checked)
        except ValueError as exc:
            raise ArtifactError(f"{role} {model_type!r} cannot be published: {exc}") from None


def has_streamed_arrays(*states: ModelState | None) -> bool:
    """Return whether any of the states gives arrays in blocks."""
    return any(state is not None and state.streamed for state in states)


def check_streamed_arrays(
    classes: Mapping[str, Any], state: ModelState, fallback: ModelState | None, path: Path
) -> None:
    """Check states whose arrays were streamed into an archive, reading those back in blocks.

    The arrays in memory are checked as they are; each streamed array is
    checked as the file holds it, ``READ_BACK_BYTES`` at a time.

    Raises:
        ArtifactError: As ``check_before_publishing``.
    """
    written = written_in_blocks(path)

    def as_written(checked: ModelState, prefix: str) -> ModelState:
        streamed = {name: written[prefix + name] for name in checked.streamed}
        return ModelState(arrays=checked.arrays, params=checked.params, streamed=streamed)

    check_before_publishing(
        classes,
        as_written(state, MODEL_PREFIX),
        as_written(fallback, FALLBACK_PREFIX) if fallback is not None else None,
    )


def write_arrays(path: Path, arrays: Mapping[str, StateArray]) -> tuple[str, str]:
    """Write the arrays as an uncompressed ``.npz``, fsynced; return its checksums.

    Each array's data starts at a multiple of ``ARRAY_ALIGNMENT`` in the
    file, so that mapped it is aligned as numpy needs it to be read in place.
    An array in blocks is written one block at a time, never whole in memory.

    Returns:
        The SHA-256 of the whole file, and of its sampled blocks (``sampled_sha256``).

    Raises:
        ArtifactError: An array in blocks does not match its declared shape
            and dtype (the file is then incomplete: the caller discards it).
    """
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                header = (
                    _LOCAL_HEADER_BYTES
                    + len(member.filename.encode())
                    + _PADDING_HEADER_BYTES
                    + _ZIP64_FIELD_BYTES
                )
                padding = -(f.tell() + header) % ARRAY_ALIGNMENT
                member.extra = struct.pack("<HH", _PADDING_FIELD, padding) + bytes(padding)
                # force_zip64 as np.savez does: a member's size is unknown until written.
                with archive.open(member, "w", force_zip64=True) as out:
                    if isinstance(array, ArrayChunks):
                        try:
                            _write_blocks(out, array)
                        except ValueError as exc:
                            raise ArtifactError(f"array {name!r}: {exc}") from None
                    else:
                        np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    with open_regular_file(path) as f:
        return file_sha256(f), sampled_sha256(f)


def _write_blocks(member: io.BufferedIOBase | Any, array: ArrayChunks) -> None:
    """Write an ``.npy`` of an array in blocks: the header ``np.save`` writes, then each block."""
    if array.dtype.hasobject:
        raise ValueError("holds Python objects; artifacts store numbers")
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": array.shape,
    }
    try:
        np.lib.format.write_array_header_1_0(member, header)
    except ValueError:  # a header too long for format 1.0, as np.save falls back
        np.lib.format.write_array_header_2_0(member, header)
    for block in array:
        if block.size:
            member.write(np.ascontiguousarray(block).data.cast("B"))


def written_in_blocks(path: Path) -> dict[str, ArrayChunks]:
    """Return every array of an archive as ``ArrayChunks`` that read the file block by block.

    Raises:
        ArtifactError: The file is not an uncompressed archive of arrays.
    """
    try:
        with open_regular_file(path) as f:
            layouts = {name: _member_layout(f, info) for name, info in _members(f).items()}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"{path}: not an archive of arrays ({exc})") from None
    arrays = {}
    for name, (offset, shape, fortran, dtype) in layouts.items():
        if fortran or not shape:
            raise ArtifactError(f"{path}: member {name!r} cannot be read in blocks of rows")
        arrays[name] = ArrayChunks(shape, dtype, _reader(path, offset, shape, dtype))
    return arrays


def _reader(path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """Return a function that starts a pass over an array's rows in the file, in blocks."""
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
    rows_per_block = max(1, READ_BACK_BYTES // row_bytes)

    def blocks() -> Iterator[np.ndarray]:
        with open_regular_file(path) as f:
            f.seek(offset)
            for start in range(0, shape[0], rows_per_block):
                rows = min(rows_per_block, shape[0] - start)
                data = f.read(rows * row_bytes)
                if len(data) != rows * row_bytes:
                    raise ValueError(f"{path}: the file ends inside an array")
                yield np.frombuffer(data, dtype=dtype).reshape(rows, *shape[1:])

    return blocks


def file_sha256(f: io.BufferedReader) -> str:
    """Return the SHA-256 of a whole file, read in blocks (never whole in memory)."""
    f.seek(0)
    return hashlib.file_digest(f, "sha256").hexdigest()


def sampled_sha256(f: io.BufferedReader) -> str:
    """Return the SHA-256 of the file's size and of blocks spread evenly over it.

    A truncated, extended or overwritten file changes it; reading 4 MiB of
    a 1.6 GB file takes milliseconds where the whole checksum takes seconds.
    """
    size = os.fstat(f.fileno()).st_size
    digest = hashlib.sha256(str(size).encode())
    step = max(_BLOCK_BYTES, size // _SAMPLE_BLOCKS)
    for offset in range(0, size, step):
        f.seek(offset)
        digest.update(f.read(_BLOCK_BYTES))
    if size:
        f.seek(max(0, size - _BLOCK_BYTES))
        digest.update(f.read(_BLOCK_BYTES))
    return digest.hexdigest()


def map_arrays(path: Path, sha256: str, sampled: str | None) -> dict[str, np.ndarray]:
    """Map every array of an ``.npz`` read-only, after checking the file against its checksum.

    Files up to ``FULL_CHECK_BYTES``, and any file whose sampled checksum was
    not recorded, are checked whole; larger ones by ``sampled_sha256``.

    Raises:
        ArtifactError: The file is a link or not a regular file, does not match
            its checksum, or is not an uncompressed archive of arrays.
    """
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= FULL_CHECK_BYTES or not sampled:
            matches = file_sha256(f) == sha256
        else:
            matches = sampled_sha256(f) == sampled
        if not matches:
            raise ArtifactError(f"{path}: checksum mismatch (damaged file)")
        try:
            return {name: _map_member(f, info) for name, info in _members(f).items()}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ArtifactError(f"{path}: not an archive of arrays ({exc})") from None


def _members(f: io.BufferedReader) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(f) as archive:
        infos = archive.infolist()
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"member {info.filename!r} is not an uncompressed .npy")
        members[info.filename.removesuffix(".npy")] = info
    return members


_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _map_member(f: io.BufferedReader, info: zipfile.ZipInfo) -> np.ndarray:
    """Map one ``.npy`` member of the archive, where its bytes lie in the file."""
    offset, shape, fortran, dtype = _member_layout(f, info)
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    return np.memmap(
        f, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def _member_layout(
    f: io.BufferedReader, info: zipfile.ZipInfo
) -> tuple[int, tuple[int, ...], bool, np.dtype]:
    """Return where a ``.npy`` member's data starts in the file, its shape, order and dtype.

    Raises:
        ValueError: The member has no local header, an unknown format,
            Python objects, or a size that does not match its header.
    """
    f.seek(info.header_offset)
    local = f.read(30)  # the member's local header: its name and extra field follow
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"member {info.filename!r}: no local header")
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
    start += int.from_bytes(local[28:30], "little")
    f.seek(start)
    read_header = _NPY_HEADERS.get(np.lib.format.read_magic(f))
    if read_header is None:
        raise ValueError(f"member {info.filename!r}: an .npy format this code does not read")
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError(f"member {info.filename!r} holds Python objects")
    offset = f.tell()
    if offset - start + int(np.prod(shape)) * dtype.itemsize != info.file_size:
        raise ValueError(f"member {info.filename!r}: its size does not match its header")
    return offset, tuple(shape), bool(fortran), dtype


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


def open_regular_file(path: Path) -> io.BufferedReader:
    """Open a file for reading, refusing symbolic links and anything but a regular file.

    Raises:
        ArtifactError: The file is a link, not a regular file, or unreadable.
    """
    if path.is_symlink():
        raise ArtifactError(f"{path}: is a symbolic link; artifact files must be regular files")
    try:
        # O_NOFOLLOW refuses a link swapped in after the check; O_NONBLOCK
        # keeps a FIFO planted under the name from blocking the open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise ArtifactError(f"{path}: not a regular file")
    return f


def read_regular_file(path: Path) -> bytes:
    """Return a file's bytes, refusing symbolic links and anything but a regular file.

    Raises:
        ArtifactError: The file is a link, not a regular file, or unreadable.
    """
    with open_regular_file(path) as f:
        try:
            return f.read()
        except OSError as exc:
            raise ArtifactError(f"{path}: unreadable ({exc})") from None
