"""Artifacts that pass their checksum but hold unusable arrays, or links out of the root."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.models.popularity import PopularityRecommender
from recsys.models.svd import SVDRecommender
from recsys.store import artifact_files
from recsys.store.artifacts import ArtifactError, ModelRegistry
from tests.builders import runtime_of


def tiny_feedback() -> pd.DataFrame:
    """Return six users' ratings of five products, with gaps in the ids."""
    rng = np.random.default_rng(0)
    rows = [(u, p) for u in range(1, 7) for p in range(1, 6) if (u + p) % 3]
    frame = pd.DataFrame(rows, columns=["user_id", "product_id"])
    frame["user_id"] = frame["user_id"] * 10
    frame["product_id"] = frame["product_id"] * 100
    ratings = rng.integers(1, 6, len(frame)).astype(float)
    return frame.assign(clicks=1, engagement=ratings, rating=ratings)


def tiny_catalog() -> pd.DataFrame:
    ids = [100, 200, 300, 400, 500]
    return pd.DataFrame(
        {"product_id": ids, "name": [f"p{i}" for i in ids], "category": ["a"] * len(ids)}
    )


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", keep=5)


def publish(registry: ModelRegistry) -> str:
    """Publish an SVD model with its popularity fallback and catalog, as training does."""
    feedback = tiny_feedback()
    model = SVDRecommender(n_factors=3, n_epochs=5).fit(feedback)
    fallback = PopularityRecommender().fit(feedback)
    meta = registry.publish(
        model.get_state(),
        data_fingerprint="sha256:test",
        fallback=fallback.get_state(),
        catalog=tiny_catalog(),
    )
    return meta.version


def rewrite_arrays(directory, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Change a version's arrays and record their new checksum, so the checksum passes."""
    with np.load(directory / "arrays.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    (directory / "arrays.npz").write_bytes(payload)
    meta = json.loads((directory / "metadata.json").read_text())
    meta["arrays_sha256"] = hashlib.sha256(payload).hexdigest()
    (directory / "metadata.json").write_text(json.dumps(meta))


def edit(name: str, how: Callable[[np.ndarray], np.ndarray]):
    """Return a change that replaces one array by ``how`` applied to a copy of it."""

    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = how(arrays[name].copy())

    return change


def remove(name: str):
    """Return a change that deletes one array."""

    def change(arrays: dict[str, np.ndarray]) -> None:
        del arrays[name]

    return change


def set_first(value):
    """Return an edit that sets an array's first element."""

    def how(array: np.ndarray) -> np.ndarray:
        array.flat[0] = value
        return array

    return how


def duplicate_second(array: np.ndarray) -> np.ndarray:
    array[1] = array[0]
    return array


TAMPERING = [
    pytest.param(
        edit("model.user_factors", lambda a: a[:-1]),
        r"user_factors has shape \(5, 3\), expected \(n_users, k\) = \(6, 3\)",
        id="user-factors-one-row-short",
    ),
    pytest.param(
        edit("model.item_factors", lambda a: a[:, :-1]),
        r"item_factors has shape \(5, 2\), expected \(n_items, k\) = \(5, 3\)",
        id="item-factors-of-another-k",
    ),
    pytest.param(
        edit("model.user_factors", lambda a: a.ravel()),
        r"user_factors has shape \(18,\), expected \(n_users, k\)",
        id="user-factors-flattened",
    ),
    pytest.param(remove("model.item_bias"), r"item_bias is missing", id="missing-item-bias"),
    pytest.param(
        remove("fallback.item_clicks"),
        r"fallback model 'popular': item_clicks is missing",
        id="missing-fallback-array",
    ),
    pytest.param(
        edit("model.user_factors", set_first(np.nan)),
        r"user_factors holds 1 NaN",
        id="nan-in-user-factors",
    ),
    pytest.param(
        edit("model.item_bias", set_first(np.inf)),
        r"item_bias holds 1 infinite",
        id="inf-in-item-bias",
    ),
    pytest.param(
        edit("fallback.item_clicks", set_first(-np.inf)),
        r"fallback model 'popular': item_clicks holds 1 infinite",
        id="inf-in-fallback-clicks",
    ),
    pytest.param(
        edit("model.global_mean", lambda a: np.array([3.0, 3.0])),
        r"global_mean has shape \(2,\), expected \(1,\)",
        id="two-global-means",
    ),
    pytest.param(
        edit("model.item_factors", lambda a: a.astype(str)),
        r"item_factors has dtype <U\d+; expected numbers",
        id="text-factors",
    ),
    pytest.param(
        edit("model.product_ids", lambda a: a[::-1]),
        r"product_ids is not strictly increasing",
        id="unsorted-product-ids",
    ),
    pytest.param(
        edit("model.product_ids", duplicate_second),
        r"product_ids is not strictly increasing",
        id="duplicate-product-ids",
    ),
    pytest.param(
        edit("model.user_ids", set_first(-10)),
        r"user_ids holds ids below 1 \(smallest -10\)",
        id="negative-user-id",
    ),
    pytest.param(
        edit("model.user_ids", set_first(0)),
        r"user_ids holds ids below 1 \(smallest 0\)",
        id="zero-user-id",
    ),
    pytest.param(
        edit("model.product_ids", lambda a: a.reshape(1, -1)),
        r"product_ids must be 1-D, got shape \(1, 5\)",
        id="two-dimensional-product-ids",
    ),
    pytest.param(
        edit("model.user_ids", lambda a: a.astype(np.float64)),
        r"user_ids has dtype float64; expected integers",
        id="float-user-ids",
    ),
    pytest.param(
        edit("model.user_ids", lambda a: a[:0]),
        r"user_ids is empty",
        id="empty-user-ids",
    ),
    pytest.param(
        edit("catalog.name", lambda a: a[:-1]),
        r"catalog columns differ in length: .*'name': 4",
        id="catalog-column-one-short",
    ),
    pytest.param(
        edit("catalog.category", lambda a: a.reshape(1, -1)),
        r"catalog\.category must be 1-D, got shape \(1, 5\)",
        id="two-dimensional-catalog-column",
    ),
    pytest.param(
        remove("catalog.category"),
        r"catalog\.category is missing",
        id="missing-catalog-column",
    ),
    pytest.param(
        edit("catalog.product_id", lambda a: a.astype(str)),
        r"catalog\.product_id has dtype <U\d+; expected integers",
        id="text-catalog-ids",
    ),
]


@pytest.mark.parametrize(("change", "problem"), TAMPERING)
def test_arrays_with_a_valid_checksum_but_unusable_content_are_refused(registry, change, problem):
    publish(registry)
    bad = publish(registry)
    rewrite_arrays(registry.root / bad, change)
    with pytest.raises(ArtifactError, match=problem):
        registry.load(bad)


@pytest.mark.parametrize(("change", "problem"), TAMPERING)
def test_load_latest_falls_back_to_the_previous_good_version(registry, caplog, change, problem):
    good = publish(registry)
    bad = publish(registry)
    rewrite_arrays(registry.root / bad, change)
    with caplog.at_level(logging.WARNING, logger="recsys.store.artifacts"):
        loaded = registry.load_latest()
    assert loaded.metadata.version == good
    assert any(bad in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def keep_the_checksum(directory, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Change a version's arrays into other valid ones, keeping the recorded checksum."""
    meta = (directory / "metadata.json").read_text()
    rewrite_arrays(directory, change)
    (directory / "metadata.json").write_text(meta)


def scale(name: str, factor: float):
    """Return a change that multiplies one array by ``factor`` (still a valid model)."""
    return edit(name, lambda a: a * factor)


def set_checksum(value: str | None):
    """Return a metadata change that records ``value`` as the checksum (None: no checksum)."""

    def change(meta: dict) -> None:
        if value is None:
            del meta["arrays_sha256"]
        else:
            meta["arrays_sha256"] = value

    return change


CHECKSUM_TAMPERING = [
    pytest.param(
        lambda d: keep_the_checksum(d, scale("model.item_factors", 2.0)), id="factors-doubled"
    ),
    pytest.param(
        lambda d: keep_the_checksum(d, edit("model.item_bias", set_first(1.5))),
        id="one-bias-changed",
    ),
    pytest.param(
        lambda d: keep_the_checksum(d, scale("fallback.item_clicks", 10.0)),
        id="fallback-counts-inflated",
    ),
    pytest.param(
        lambda d: rewrite_metadata(d, set_checksum("0" * 64)), id="checksum-of-other-bytes"
    ),
    pytest.param(lambda d: rewrite_metadata(d, set_checksum("")), id="empty-checksum"),
    pytest.param(lambda d: rewrite_metadata(d, set_checksum(None)), id="no-checksum"),
]


def rewrite_metadata(directory, change: Callable[[dict], None]) -> None:
    """Change a version's metadata.json in place."""
    meta = json.loads((directory / "metadata.json").read_text())
    change(meta)
    (directory / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("tamper", CHECKSUM_TAMPERING)
def test_valid_arrays_that_do_not_match_their_checksum_are_refused(registry, tamper):
    version = publish(registry)
    tamper(registry.root / version)
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.load(version)


def test_another_versions_valid_arrays_under_this_checksum_are_refused(registry):
    first, second = publish(registry), publish(registry)
    # Make the first version's arrays differ from the second's, still valid and checksummed.
    rewrite_arrays(registry.root / first, scale("model.item_factors", 2.0))
    shutil.copyfile(registry.root / first / "arrays.npz", registry.root / second / "arrays.npz")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.load(second)
    assert registry.load_latest().metadata.version == first


@pytest.mark.parametrize("tamper", CHECKSUM_TAMPERING)
def test_a_checksum_mismatch_falls_back_to_the_previous_good_version(registry, tamper):
    good = publish(registry)
    bad = publish(registry)
    tamper(registry.root / bad)
    assert registry.load_latest().metadata.version == good


def test_the_untouched_tiny_model_loads_and_recommends(registry):
    version = publish(registry)
    loaded = registry.load(version)
    assert len(loaded.model.recommend([10], 3).lists[10]) == 3
    assert loaded.catalog["product_id"].tolist() == tiny_catalog()["product_id"].tolist()


def test_newer_than_passes_over_a_version_that_failed_to_load(registry):
    live = publish(registry)
    good = publish(registry)
    bad = publish(registry)
    rewrite_arrays(registry.root / bad, edit("model.user_factors", set_first(np.nan)))
    assert registry.newer_than(live) == bad
    with pytest.raises(ArtifactError):
        registry.load(bad)
    assert registry.newer_than(live) == good
    assert registry.newer_than(good) is None


def test_a_rejected_version_is_tried_again_once_its_arrays_are_replaced(registry):
    live = publish(registry)
    bad = publish(registry)
    directory = registry.root / bad
    original = (directory / "arrays.npz").read_bytes()
    rewrite_arrays(directory, edit("model.user_factors", set_first(np.nan)))
    with pytest.raises(ArtifactError):
        registry.load(bad)
    (directory / "arrays.npz").write_bytes(original)
    meta = json.loads((directory / "metadata.json").read_text())
    meta["arrays_sha256"] = hashlib.sha256(original).hexdigest()
    (directory / "metadata.json").write_text(json.dumps(meta))
    assert registry.newer_than(live) == bad


# -- links out of the model directory -------------------------------------------


def outside_copy_linked_as_newest(registry: ModelRegistry, tmp_path) -> str:
    """Copy the newest version out of the root and link it back in under the next number."""
    newest = registry.versions()[0]
    outside = tmp_path / "elsewhere" / "v00099-20300101T000000Z"
    shutil.copytree(registry.root / newest, outside)
    meta = json.loads((outside / "metadata.json").read_text())
    meta["version"] = outside.name
    (outside / "metadata.json").write_text(json.dumps(meta))
    (registry.root / outside.name).symlink_to(outside, target_is_directory=True)
    return outside.name


def test_a_symlinked_version_directory_is_not_listed(registry, tmp_path):
    real = publish(registry)
    outside_copy_linked_as_newest(registry, tmp_path)
    assert registry.versions() == [real]


def test_a_symlinked_version_directory_is_not_loaded(registry, tmp_path):
    real = publish(registry)
    linked = outside_copy_linked_as_newest(registry, tmp_path)
    with pytest.raises(ArtifactError, match="symbolic link"):
        registry.load(linked)
    with pytest.raises(ArtifactError, match="symbolic link"):
        registry.read_metadata(linked)
    assert registry.load_latest().metadata.version == real
    assert registry.newer_than(real) is None


def test_publishing_numbers_past_a_symlinked_version_entry(registry, tmp_path):
    publish(registry)
    linked = outside_copy_linked_as_newest(registry, tmp_path)
    published = publish(registry)
    assert published.startswith("v00100-")
    assert (registry.root / linked).is_symlink()


@pytest.mark.parametrize("file_name", ["metadata.json", "arrays.npz"])
def test_a_symlinked_file_inside_a_version_is_refused(registry, tmp_path, file_name):
    good = publish(registry)
    bad = publish(registry)
    outside = tmp_path / file_name
    shutil.move(registry.root / bad / file_name, outside)
    os.symlink(outside, registry.root / bad / file_name)
    with pytest.raises(ArtifactError, match=rf"{re.escape(file_name)}: is a symbolic link"):
        registry.load(bad)
    assert registry.load_latest().metadata.version == good


def test_a_fifo_in_place_of_the_arrays_is_refused_without_blocking(registry):
    good = publish(registry)
    bad = publish(registry)
    (registry.root / bad / "arrays.npz").unlink()
    os.mkfifo(registry.root / bad / "arrays.npz")
    with pytest.raises(ArtifactError, match=r"arrays\.npz: not a regular file"):
        registry.load(bad)
    assert registry.load_latest().metadata.version == good


@pytest.mark.parametrize(
    "version",
    ["../elsewhere", "v00001-20300101T000000Z/../../x", "v00001-20300101T000000Z\n", ""],
)
def test_a_name_that_is_not_a_version_id_is_refused(registry, version):
    publish(registry)
    with pytest.raises(ArtifactError, match="not a version id"):
        registry.load(version)


# -- as a running service sees it ---------------------------------------------------


def test_a_worker_refuses_a_bad_new_version_then_serves_the_good_one_before_it(app_factory):
    trainer, worker = app_factory(), app_factory()
    client = worker.test_client()
    first = client.get("/model").get_json()["version"]
    good = runtime_of(trainer).train().version
    bad = runtime_of(trainer).train().version
    registry = runtime_of(trainer).registry
    rewrite_arrays(registry.root / bad, edit("model.user_factors", set_first(np.nan)))

    assert runtime_of(worker).refresh() is False
    assert client.get("/model").get_json()["version"] == first
    assert runtime_of(worker).refresh() is True
    assert client.get("/model").get_json()["version"] == good
    user = int(runtime_of(worker).service.live.current().model.user_ids[0])
    response = client.get(f"/recommend?user_id={user}&n=3")
    assert response.status_code == 200
    assert len(response.get_json()["recommendations"]) == 3


# -- one copy per machine: arrays mapped, checked cheaply -------------------------------


def mapped_files() -> set[str]:
    """Return the files this process maps (from /proc/self/maps)."""
    rows = Path("/proc/self/maps").read_text().splitlines()
    return {row.split(maxsplit=5)[5] for row in rows if len(row.split(maxsplit=5)) == 6}


def fitted_svd() -> SVDRecommender:
    return SVDRecommender(n_factors=3, n_epochs=5).fit(tiny_feedback())


def test_a_loaded_version_maps_its_arrays_file_instead_of_reading_it(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    meta = registry.publish(fitted_svd().get_state(), data_fingerprint="x")
    loaded = registry.load(meta.version)
    assert str(registry.root / meta.version / "arrays.npz") in mapped_files()
    assert not loaded.model.item_factors.flags.writeable  # read-only, shared with every reader


def test_every_mapped_array_starts_aligned_so_numpy_reads_it_in_place(tmp_path):
    # An unaligned mapped array is copied by every numpy operation that reads
    # it: a model's factors once per answer.
    registry = ModelRegistry(tmp_path / "models")
    meta = registry.publish(
        fitted_svd().get_state(),
        data_fingerprint="x",
        fallback=PopularityRecommender().fit(tiny_feedback()).get_state(),
        catalog=tiny_catalog(),
    )
    arrays = artifact_files.map_arrays(
        registry.root / meta.version / "arrays.npz", meta.arrays_sha256, None
    )
    assert len(arrays) > 10
    for name, array in arrays.items():
        assert array.ctypes.data % artifact_files.ARRAY_ALIGNMENT == 0, name
        assert array.flags.aligned, name
    with np.load(registry.root / meta.version / "arrays.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(arrays)  # still an .npz numpy reads
        for name in archive.files:
            assert np.array_equal(archive[name], arrays[name]), name


def test_a_large_file_is_checked_by_its_sampled_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact_files, "FULL_CHECK_BYTES", 0)  # every file counts as large
    registry = ModelRegistry(tmp_path / "models")
    meta = registry.publish(fitted_svd().get_state(), data_fingerprint="x")
    assert meta.arrays_sampled_sha256
    assert registry.load(meta.version).metadata.version == meta.version
    path = registry.root / meta.version / "arrays.npz"
    damaged = bytearray(path.read_bytes())
    damaged[-100] ^= 0xFF  # inside the last sampled block
    path.write_bytes(bytes(damaged))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        ModelRegistry(tmp_path / "models").load(meta.version)


def test_arrays_that_could_not_be_served_are_refused_at_publishing(tmp_path):
    state = fitted_svd().get_state()
    state.arrays["item_factors"] = np.full_like(state.arrays["item_factors"], np.nan)
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ArtifactError, match="model 'svd' cannot be published: item_factors"):
        registry.publish(state, data_fingerprint="x")
    assert registry.versions() == []
