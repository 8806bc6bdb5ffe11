"""A fitted model as plain data, and the checks its arrays pass before they are served.

A model's learned state is a dict of numpy arrays plus a dict of JSON-able
parameters, so an artifact store can save it without pickling code. Before a
model is rebuilt from one (``Recommender.from_state``), ``check_state_arrays``
refuses arrays that would break or silently empty every answer: missing or
misshapen arrays, NaN or infinite values, id maps that are not sorted unique
positive integers, indices past the arrays they index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
class ModelState:
    """A fitted model as plain data: numeric arrays and JSON-able parameters."""

    arrays: dict[str, np.ndarray]
    params: dict[str, Any]


def _state_array(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise ValueError(f"{name} is missing")
    return np.asarray(arrays[name])


def _check_id_map(name: str, ids: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``ids`` can serve as a sorted id map for ``lookup_ids``."""
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {ids.dtype}; expected integers")
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
    if len(ids) == 0:
        # lookup_ids indexes the map, so an empty one fails on every request.
        raise ValueError(f"{name} is empty")
    if ids.min() < 1:
        raise ValueError(f"{name} holds ids below 1 (smallest {ids.min()})")
    if ids.max() > _MAX_INT64:
        raise ValueError(f"{name} holds ids above the int64 range (largest {ids.max()})")
    # Binary search needs strictly increasing ids: unsorted ones find the
    # wrong rows, duplicates leave rows unreachable.
    steps = np.flatnonzero(ids[1:] <= ids[:-1])
    if len(steps):
        at = int(steps[0]) + 1
        raise ValueError(
            f"{name} is not strictly increasing (sorted, unique): "
            f"position {at} holds {ids[at]} after {ids[at - 1]}"
        )


def _check_learned_array(
    name: str, array: np.ndarray, shape: ArrayShape, sizes: dict[str, int]
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
        counts = {"NaN": int(np.isnan(array).sum()), "infinite": int(np.isinf(array).sum())}
        # Ranking drops NaN and infinite scores, so such a model answers empty lists.
        if any(counts.values()):
            found = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
            raise ValueError(f"{name} holds {found} value(s); expected finite numbers")


def _check_index_array(name: str, array: np.ndarray, size: int | None) -> None:
    """Raise ``ValueError`` unless ``array`` holds integers from 0 (below ``size`` if given)."""
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {array.dtype}; expected integers")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} holds negative values (smallest {array.min()})")
    if size is not None and array.size and array.max() >= size:
        raise ValueError(f"{name} holds {array.max()}, past the last index {size - 1}")


def check_state_arrays(
    arrays: Mapping[str, np.ndarray],
    state_shapes: Mapping[str, ArrayShape],
    derived_sizes: Mapping[str, str],
    index_arrays: Mapping[str, str],
) -> None:
    """Check that a state's arrays can be served before a model is built from them.

    The id maps must be non-empty 1-D integer arrays of strictly increasing
    ids from 1; every array named in ``state_shapes`` must be present,
    numeric, finite and of its declared shape. Arrays not declared are ignored.

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
        sizes[size] = len(ids)
    for size, source in derived_sizes.items():
        counts = arrays.get(source)
        # An unusable source is reported by its own shape check below.
        if counts is not None and counts.dtype.kind in "iu" and counts.ndim == 1:
            sizes[size] = int(counts.sum())
    for name, shape in state_shapes.items():
        _check_learned_array(name, _state_array(arrays, name), shape, sizes)
    for name in derived_sizes.values():
        _check_index_array(name, arrays[name], None)
    for name, size in index_arrays.items():
        _check_index_array(name, arrays[name], sizes[size])
