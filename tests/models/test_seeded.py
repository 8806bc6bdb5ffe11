"""Seeded draws keyed by ids: the same number for a seed and key, however they are drawn."""

import numpy as np

from recsys.models.seeded import seeded_unit, seeded_units


def test_one_draw_in_python_integers_is_the_arrays_draw():
    keys = np.array([0, 1, 7, 2**40, 2**62], dtype=np.int64)
    for seed in (0, 1, 2**63 + 12345, 2**64 - 1):
        drawn = seeded_units(seed, keys)
        assert ((drawn >= 0) & (drawn < 1)).all()
        assert drawn.tolist() == [seeded_unit(seed, key) for key in keys.tolist()]


def test_a_keys_draw_does_not_depend_on_the_keys_drawn_with_it():
    keys = np.array([3, 11, 2**40], dtype=np.int64)
    together = seeded_units(7, keys)
    assert together.tolist() == [seeded_units(7, keys[i : i + 1])[0] for i in range(3)]
    assert seeded_units(7, keys[::-1]).tolist() == together[::-1].tolist()
