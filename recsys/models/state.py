"""A fitted model as plain data, and the checks its arrays pass before they are served.

A model's learned state is a dict of numpy arrays plus a dict of JSON-able
parameters, so an artifact store can save it without pickling code. Before a
model is rebuilt from one (``Recommender.from_state``), ``check_state_arrays``
refuses arrays that would break or silently empty every answer: missing or
misshapen arrays, NaN or infinite values, id maps that are not sorted unique
positive integers, indices past the arrays they index.

An array too large to hold at once (a cluster's user factors) can be given as
``ArrayChunks``, its rows in blocks: the checks then read it block by block,
and a publisher writes it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A learned array's expected shape: per axis a fixed length or a size's name.
# "n_users" and "n_items" are the lengths of the id maps; any other name (such
# as "k") is taken from the first array that uses it and must match in the rest.
ArrayShape = tuple[int | str, ...]


# The id maps every state holds, and the size each one defines for the shapes
# of the learned arrays.
_ID_MAP_SIZES = {"user_ids": "n_users", "product_ids": "n_items"}
_MAX_INT64 = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ArrayChunks:
    """An array given as blocks of its rows, in order, so that it is never whole in memory.

    Each call of ``blocks`` starts a new pass (a query of a cluster, a read
    of a file); iterating the object runs one pass and checks every block's
    dtype and row shape and that the rows add up to ``shape[0]``.

    Attributes:
        shape: The whole array's shape, rows first.
        dtype: The dtype of the array and of every block.
        blocks: Starts a pass over the blocks, each of shape ``(rows, *shape[1:])``.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[], Iterable[np.ndarray]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if not self.shape or min(self.shape) < 0:
            raise ValueError(f"an array in blocks needs rows, got shape {self.shape}")

    @property
    def ndim(self) -> int:
        """The number of axes of the whole array."""
        return len(self.shape)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Run one pass over the blocks, checking each one against the declared array.

        Raises:
            ValueError: A block has another dtype or row shape, or the rows
                do not add up to the declared number.
        """
        rows = 0
        for block in self.blocks():
            if block.dtype != self.dtype or block.shape[1:] != self.shape[1:]:
                raise ValueError(
                    f"a block of {block.dtype} {block.shape} in an array of "
                    f"{self.dtype} {self.shape}"
                )
            rows += len(block)
            if rows > self.shape[0]:
                raise ValueError(f"more than the declared {self.shape[0]} rows")
            yield block
        if rows != self.shape[0]:
            raise ValueError(f"{rows} rows, not the declared {self.shape[0]}")


# What a check reads: an array in memory, or one in blocks.
StateArray = np.ndarray | ArrayChunks


@dataclass(frozen=True)
class ModelState:
    """A fitted model as plain data: numeric arrays and JSON-able parameters.

    Attributes:
        arrays: The arrays in memory.
        params: The parameters, ``params["model"]`` naming the model type.
        streamed: Arrays given in blocks (too large to hold at once), to be
            published; a model is never rebuilt from them, only from the
            published arrays.
    """

    arrays: dict[str, np.ndarray]
    params: dict[str, Any]
    streamed: dict[str, ArrayChunks] = field(default_factory=dict)

    def all_arrays(self) -> dict[str, StateArray]:
        """Return the arrays in memory and the streamed ones, by name."""
        return {**self.arrays, **self.streamed}


def _state_array(arrays: Mapping[str, StateArray], name: str) -> StateArray:
    if name not in arrays:
        raise ValueError(f"{name} is missing")
    array = arrays[name]
    return array if isinstance(array, ArrayChunks) else np.asarray(array)


def _blocks(array: StateArray) -> Iterator[np.ndarray]:
    """Yield an array's blocks: itself when in memory, one pass of them when in blocks."""
    if isinstance(array, ArrayChunks):
        yield from array
    else:
        yield array


def _check_id_map(name: str, ids: StateArray) -> None:
    """Raise ``ValueError`` unless ``ids`` can serve as a sorted id map for ``lookup_ids``."""
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {ids.dtype}; expected integers")
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
    if ids.shape[0] == 0:
        # lookup_ids indexes the map, so an empty one fails on every request.
        raise ValueError(f"{name} is empty")
    offset, last = 0, None
    for block in _blocks(ids):
        if not len(block):
            continue
        if block.min() < 1:
            raise ValueError(f"{name} holds ids below 1 (smallest {block.min()})")
        if block.max() > _MAX_INT64:
            raise ValueError(f"{name} holds ids above the int64 range (largest {block.max()})")
        # Binary search needs strictly increasing ids: unsorted ones find the
        # wrong rows, duplicates leave rows unreachable.
        if last is not None and block[0] <= last:
            raise ValueError(
                f"{name} is not strictly increasing (sorted, unique): "
                f"position {offset} holds {block[0]} after {last}"
            )
        steps = np.flatnonzero(block[1:] <= block[:-1])
        if len(steps):
            at = int(steps[0]) + 1
            raise ValueError(
                f"{name} is not strictly increasing (sorted, unique): "
                f"position {offset + at} holds {block[at]} after {block[at - 1]}"
            )
        offset, last = offset + len(block), block[-1]


def _check_learned_array(
    name: str, array: StateArray, shape: ArrayShape, sizes: dict[str, int]
) -> None:
    """Raise ``ValueError`` unless ``array`` is finite numbers of the declared shape.

    Binds each named size not yet in ``sizes`` to this array's length on that axis.
    """
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {array.dtype}; expected numbers")
    if array.ndim == len(shape):
        for axis, size in zip(array.shape, shape, strict=True):
            if isinstance(size, str):
                sizes.setdefault(size, axis)
    expected = tuple(sizes.get(s, s) if isinstance(s, str) else s for s in shape)
    if array.shape != expected:
        declared = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
        raise ValueError(f"{name} has shape {array.shape}, expected ({declared}) = {expected}")
    if array.dtype.kind == "f":
        counts = {"NaN": 0, "infinite": 0}
        for block in _blocks(array):
            counts["NaN"] += int(np.isnan(block).sum())
            counts["infinite"] += int(np.isinf(block).sum())
        # Ranking drops NaN and infinite scores, so such a model answers empty lists.
        if any(counts.values()):
            found = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
            raise ValueError(f"{name} holds {found} value(s); expected finite numbers")


def _check_index_array(name: str, array: StateArray, size: int | None) -> None:
    """Raise ``ValueError`` unless ``array`` holds integers from 0 (below ``size`` if given)."""
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {array.dtype}; expected integers")
    for block in _blocks(array):
        if block.size and block.min() < 0:
            raise ValueError(f"{name} holds negative values (smallest {block.min()})")
        if size is not None and block.size and block.max() >= size:
            raise ValueError(f"{name} holds {block.max()}, past the last index {size - 1}")


def check_state_arrays(
    arrays: Mapping[str, StateArray],
    state_shapes: Mapping[str, ArrayShape],
    derived_sizes: Mapping[str, str],
    index_arrays: Mapping[str, str],
) -> None:
    """Check that a state's arrays can be served before a model is built from them.

    The id maps must be non-empty 1-D integer arrays of strictly increasing
    ids from 1; every array named in ``state_shapes`` must be present,
    numeric, finite and of its declared shape. Arrays not declared are ignored.
    Arrays in blocks are read one block at a time.

    Args:
        arrays: The state's arrays, for example read from disk.
        state_shapes: Each learned array's declared shape.
        derived_sizes: Sizes defined as the sum of an integer array (size -> array).
        index_arrays: Arrays of indices into an axis of the given size (array -> size).

    Raises:
        ValueError: Naming the first array at fault and what is wrong with it.
    """
    sizes: dict[str, int] = {}
    for name, size in _ID_MAP_SIZES.items():
        ids = _state_array(arrays, name)
        _check_id_map(name, ids)
        sizes[size] = ids.shape[0]
    for size, source in derived_sizes.items():
        counts = arrays.get(source)
        # An unusable source is reported by its own shape check below.
        if counts is not None and counts.dtype.kind in "iu" and counts.ndim == 1:
            sizes[size] = sum(int(block.sum()) for block in _blocks(counts))
    for name, shape in state_shapes.items():
        _check_learned_array(name, _state_array(arrays, name), shape, sizes)
    for name in derived_sizes.values():
        _check_index_array(name, arrays[name], None)
    for name, size in index_arrays.items():
        _check_index_array(name, arrays[name], sizes[size])
