"""Arrays given in blocks (a cluster's user factors): written and checked one block at a time.

The publisher of a model trained on a cluster never holds all the users'
factors: it gives them as ``ArrayChunks`` and the registry writes them into
the arrays file block by block, then checks them by reading the file back
block by block. The file is the one written of the whole arrays at once,
so servers load it as any other.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import numpy as np
import pytest

from recsys.models.als import ALSRecommender
from recsys.models.state import ArrayChunks, ModelState
from recsys.store.artifact_files import ArtifactError, write_arrays, written_in_blocks
from recsys.store.artifacts import ModelRegistry

USERS, ITEMS, RANK, BLOCK_ROWS = 1000, 40, 8, 64


def whole_als_state() -> ModelState:
    rng = np.random.default_rng(3)
    return ModelState(
        arrays={
            "product_ids": np.arange(1, ITEMS + 1, dtype=np.int64) * 3,
            "item_factors": rng.normal(size=(ITEMS, RANK)).astype(np.float32),
            "user_ids": np.arange(1, USERS + 1, dtype=np.int64) * 7,
            "user_factors": rng.normal(size=(USERS, RANK)).astype(np.float32),
        },
        params={"model": "als", "factors": RANK},
    )


def in_blocks(array: np.ndarray, rows: int = BLOCK_ROWS, seen: list | None = None) -> ArrayChunks:
    """Return ``array`` as blocks of ``rows`` rows, noting each block's length in ``seen``."""

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, len(array), rows):
            block = array[start : start + rows].copy()
            if seen is not None:
                seen.append(len(block))
            yield block

    return ArrayChunks(array.shape, array.dtype, blocks)


def streamed_als_state(seen: list | None = None) -> ModelState:
    whole = whole_als_state().arrays
    return ModelState(
        arrays={"product_ids": whole["product_ids"], "item_factors": whole["item_factors"]},
        params={"model": "als", "factors": RANK},
        streamed={
            "user_ids": in_blocks(whole["user_ids"], seen=seen),
            "user_factors": in_blocks(whole["user_factors"], seen=seen),
        },
    )


def test_arrays_written_in_blocks_are_the_bytes_written_of_the_whole_at_once(tmp_path):
    whole = whole_als_state().arrays
    seen: list[int] = []
    streamed = {
        "product_ids": whole["product_ids"],
        "item_factors": whole["item_factors"],
        "user_ids": in_blocks(whole["user_ids"], seen=seen),
        "user_factors": in_blocks(whole["user_factors"], seen=seen),
    }
    write_arrays(tmp_path / "streamed.npz", streamed)
    write_arrays(tmp_path / "whole.npz", whole)
    assert (tmp_path / "streamed.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()
    with np.load(tmp_path / "streamed.npz") as loaded:
        assert all(np.array_equal(loaded[name], array) for name, array in whole.items())
    # Each user array went through in blocks of at most BLOCK_ROWS rows.
    assert max(seen) == BLOCK_ROWS and sum(seen) == 2 * USERS
    assert len(seen) == 2 * -(-USERS // BLOCK_ROWS)


def test_each_block_is_in_the_file_before_the_next_is_asked_for(tmp_path):
    path = tmp_path / "arrays.npz"
    factors = whole_als_state().arrays["user_factors"]
    block_bytes = BLOCK_ROWS * RANK * 4
    sizes: list[int] = []

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, USERS, BLOCK_ROWS):
            sizes.append(path.stat().st_size if path.exists() else 0)
            yield factors[start : start + BLOCK_ROWS].copy()

    write_arrays(path, {"user_factors": ArrayChunks(factors.shape, factors.dtype, blocks)})
    # The writer's buffer holds at most a few KiB of what it was given.
    for n, size in enumerate(sizes[1:], start=1):
        assert size >= n * block_bytes - io.DEFAULT_BUFFER_SIZE, (n, size)


def test_arrays_read_back_in_blocks_equal_the_written_ones(tmp_path):
    whole = whole_als_state().arrays
    write_arrays(tmp_path / "arrays.npz", whole)
    read_back = written_in_blocks(tmp_path / "arrays.npz")
    for name, array in whole.items():
        np.testing.assert_array_equal(np.concatenate(list(read_back[name])), array)


def test_a_model_published_from_blocks_loads_as_the_one_published_whole(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    whole = registry.publish(whole_als_state(), data_fingerprint="x")
    streamed = registry.publish(streamed_als_state(), data_fingerprint="x")
    assert streamed.arrays_sha256 == whole.arrays_sha256
    loaded = registry.load(streamed.version).model
    assert isinstance(loaded, ALSRecommender)
    state = whole_als_state().arrays
    np.testing.assert_array_equal(loaded.user_factors, state["user_factors"])
    np.testing.assert_array_equal(loaded.user_ids, state["user_ids"])


def test_a_fallback_shares_the_streamed_id_map_with_the_model(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    state = streamed_als_state()
    fallback = ModelState(
        arrays={
            "product_ids": state.arrays["product_ids"],
            "item_clicks": np.ones(ITEMS, dtype=np.float64),
        },
        params={"model": "popular"},
        streamed={"user_ids": state.streamed["user_ids"]},
    )
    meta = registry.publish(state, data_fingerprint="x", fallback=fallback)
    loaded = registry.load(meta.version)
    assert loaded.fallback is not None
    np.testing.assert_array_equal(loaded.fallback.user_ids, loaded.model.user_ids)


def _faulty(name: str, change) -> ModelState:
    state = streamed_als_state()
    whole = whole_als_state().arrays[name]
    state.streamed[name] = change(whole)
    return state


def _nan_in_last_block(factors: np.ndarray) -> ArrayChunks:
    broken = factors.copy()
    broken[-1, 0] = np.nan
    return in_blocks(broken)


def _ids_repeat_across_blocks(ids: np.ndarray) -> ArrayChunks:
    broken = ids.copy()
    broken[BLOCK_ROWS] = broken[BLOCK_ROWS - 1]
    return in_blocks(broken)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "user_factors",
            lambda a: ArrayChunks((USERS + 1, RANK), a.dtype, in_blocks(a).blocks),
            f"{USERS} rows, not the declared {USERS + 1}",
        ),
        (
            "user_factors",
            lambda a: ArrayChunks((USERS - 1, RANK), a.dtype, in_blocks(a).blocks),
            f"more than the declared {USERS - 1} rows",
        ),
        (
            "user_factors",
            lambda a: ArrayChunks(a.shape, np.float64, in_blocks(a).blocks),
            "a block of float32",
        ),
        (
            "user_factors",
            lambda a: ArrayChunks((USERS, RANK + 1), a.dtype, in_blocks(a).blocks),
            "a block of float32",
        ),
        ("user_factors", _nan_in_last_block, "1 NaN value"),
        (
            "user_factors",
            lambda a: in_blocks(a[:-1].copy()),
            rf"user_factors has shape \({USERS - 1}, {RANK}\), expected \(n_users, k\)",
        ),
        ("user_ids", _ids_repeat_across_blocks, f"position {BLOCK_ROWS} holds"),
        ("user_ids", lambda a: in_blocks(a - 7), "ids below 1"),
    ],
)
def test_arrays_in_blocks_that_could_not_be_served_publish_nothing(tmp_path, name, change, message):
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ArtifactError, match=message):
        registry.publish(_faulty(name, change), data_fingerprint="x")
    assert registry.versions() == []
    assert os.listdir(registry.root) == []  # no half-written version left behind


def test_a_failing_source_of_blocks_publishes_nothing(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    state = streamed_als_state()

    def lost_executor() -> Iterator[np.ndarray]:
        yield np.zeros((BLOCK_ROWS, RANK), dtype=np.float32)
        raise ConnectionError("the executor went away")

    state.streamed["user_factors"] = ArrayChunks((USERS, RANK), np.float32, lost_executor)
    with pytest.raises(ConnectionError):
        registry.publish(state, data_fingerprint="x")
    assert os.listdir(registry.root) == []


def test_a_model_is_not_rebuilt_from_arrays_in_blocks():
    with pytest.raises(ValueError, match="in blocks"):
        ALSRecommender.from_state(streamed_als_state())


def test_an_array_in_blocks_needs_a_shape_with_rows():
    with pytest.raises(ValueError, match="needs rows"):
        ArrayChunks((), np.float32, lambda: iter(()))
