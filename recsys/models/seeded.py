"""Seeded draws keyed by ids: the same number for a seed and key in any process, in any order.

A draw from a random generator depends on how many draws came before it, so
an array position's number changes when an id is added ahead of it. These
draws (splitmix64 of the seed plus the key) depend on the seed and the key
alone: ALS starts each product's factors from its id, exploration breaks ties
between products by theirs.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1


def seeded_units(seed: int, keys: np.ndarray) -> np.ndarray:
    """Return one number in [0, 1) per key (any shape), always the same for a seed and key."""
    # In place, in one array (unsigned arrays wrap around without a warning).
    z = np.asarray(keys).astype(np.uint64)
    z += np.uint64(seed & _MASK64)
    z *= np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> 30
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> 27
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> 31
    z >>= 11
    return z.astype(np.float64) / float(1 << 53)


def seeded_unit(seed: int, key: int) -> float:
    """Return ``seeded_units(seed, [key])[0]`` in Python integers (one draw: no arrays to make)."""
    z = (key + seed) & _MASK64
    z = (z * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z = z ^ (z >> 31)
    return (z >> 11) / float(1 << 53)
