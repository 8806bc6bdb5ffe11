"""Model artifacts: atomic publish, retention, corrupt-version fallback, no pickles."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recsys.models.base import Recommender
from recsys.models.state import ArrayShape
from recsys.store.artifact_files import ModelDirectoryError
from recsys.store.artifacts import ArtifactError, ModelRegistry
from tests.builders import ROOT, kill_mid_write


class DotProductModel(Recommender):
    """A minimal factor model: enough to exercise the registry without training."""

    name = "dot"
    state_shapes: ClassVar[Mapping[str, ArrayShape]] = {
        "user_factors": ("n_users", "k"),
        "item_factors": ("n_items", "k"),
    }

    def __init__(self, factors: int = 2):
        super().__init__()
        self.factors = factors
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def _fit(self, feedback: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> None:
        rng = np.random.default_rng(0)
        self.user_factors = rng.normal(size=(len(self.user_ids), self.factors))
        self.item_factors = rng.normal(size=(len(self.product_ids), self.factors))

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def params(self) -> dict:
        return {"factors": self.factors}

    def _learned_arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _load_learned_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.user_factors = np.asarray(arrays["user_factors"], dtype=np.float64)
        self.item_factors = np.asarray(arrays["item_factors"], dtype=np.float64)


class OtherModel(DotProductModel):
    """A second model type."""

    name = "other"


def fitted_model_feedback(n_users: int = 4, n_items: int = 5) -> pd.DataFrame:
    rows = [(u, p) for u in range(1, n_users + 1) for p in range(1, n_items + 1)]
    return pd.DataFrame(rows, columns=["user_id", "product_id"]).assign(
        clicks=1, engagement=1.0, rating=3.0
    )


def fitted_model(n_users: int = 4, n_items: int = 5, factors: int = 2) -> DotProductModel:
    return DotProductModel(factors=factors).fit(fitted_model_feedback(n_users, n_items))


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", keep=3, model_classes={"dot": DotProductModel})


def publish(registry: ModelRegistry, model: Recommender | None = None, **kwargs):
    model = model or fitted_model()
    kwargs.setdefault("data_fingerprint", "sha256:test")
    return registry.publish(model.get_state(), **kwargs)


def test_published_model_loads_back_with_identical_factors_and_metadata(registry):
    model = fitted_model(factors=3)
    meta = publish(registry, model, metrics={"rmse": 0.9}, training={"interactions": 20})
    loaded = registry.load_latest()
    assert loaded.metadata == meta
    assert loaded.metadata.model_type == "dot"
    assert loaded.metadata.params == {"factors": 3}
    assert loaded.metadata.metrics == {"rmse": 0.9}
    np.testing.assert_array_equal(loaded.model.user_factors, model.user_factors)
    np.testing.assert_array_equal(loaded.model.product_ids, model.product_ids)
    assert loaded.model.recommend([1], 3).lists[1].product_ids.tolist() == (
        model.recommend([1], 3).lists[1].product_ids.tolist()
    )


def test_a_fallback_model_is_stored_and_loaded_with_the_main_one(registry):
    main, fallback = fitted_model(factors=2), fitted_model(n_users=3, factors=4)
    meta = publish(registry, main, fallback=fallback.get_state())
    assert (meta.fallback_type, meta.fallback_params) == ("dot", {"factors": 4})
    loaded = registry.load_latest()
    np.testing.assert_array_equal(loaded.fallback.item_factors, fallback.item_factors)
    np.testing.assert_array_equal(loaded.model.item_factors, main.item_factors)


def test_an_artifact_without_fallback_loads_none(registry):
    publish(registry)
    assert registry.load_latest().fallback is None


def test_versions_are_numbered_in_publish_order_newest_first(registry):
    first = publish(registry).version
    second = publish(registry).version
    assert registry.versions() == [second, first]
    assert registry.load_latest().metadata.version == second


def test_only_the_last_n_versions_are_kept(registry):
    published = [publish(registry).version for _ in range(5)]
    assert registry.versions() == published[::-1][:3]
    assert sorted(p.name for p in registry.root.iterdir()) == sorted(published[-3:])


def test_versions_in_use_outlive_the_kept_ones(tmp_path):
    pinned: list[str] = []
    registry = ModelRegistry(tmp_path, keep=1, in_use=lambda: set(pinned))
    first = publish(registry).version
    pinned.append(first)
    newest = [publish(registry).version for _ in range(3)][-1]
    assert registry.versions() == [newest, first]
    pinned.clear()
    publish(registry)
    assert first not in registry.versions()


def test_nothing_is_deleted_when_the_versions_in_use_cannot_be_told(tmp_path, caplog):
    registry = ModelRegistry(tmp_path, keep=1, in_use=lambda: None)
    for _ in range(3):
        publish(registry)
    assert len(registry.versions()) == 3
    assert "none deleted" in caplog.text


@pytest.mark.parametrize("where", ["a-file/models", "a-file"], ids=["inside a file", "a file"])
def test_publishing_into_a_directory_that_cannot_be_made_says_so_in_one_line(tmp_path, where):
    (tmp_path / "a-file").write_text("")
    unusable = ModelRegistry(tmp_path / where)
    with pytest.raises(ModelDirectoryError) as caught:
        publish(unusable)
    assert (
        str(caught.value) == f"cannot write the model directory {tmp_path / where}: Not a directory"
    )


def test_publish_leaves_no_temporary_directory(registry):
    publish(registry)
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".")] == []


def test_latest_of_a_model_type_skips_newer_versions_of_other_types(tmp_path):
    registry = ModelRegistry(tmp_path, model_classes={"dot": DotProductModel, "other": OtherModel})
    dot = publish(registry).version
    other_state = OtherModel().fit(fitted_model_feedback()).get_state()
    other = registry.publish(other_state, data_fingerprint="x").version
    assert registry.load_latest().metadata.version == other
    assert registry.load_latest(model_type="dot").metadata.version == dot
    assert registry.load_latest(model_type="missing") is None


def test_newer_than_finds_the_next_published_version_of_a_type(tmp_path):
    registry = ModelRegistry(tmp_path, model_classes={"dot": DotProductModel, "other": OtherModel})
    first = publish(registry).version
    assert registry.newer_than(first) is None
    second = publish(registry).version
    other = registry.publish(
        OtherModel().fit(fitted_model_feedback()).get_state(), data_fingerprint="x"
    ).version
    assert registry.newer_than(first) == other
    assert registry.newer_than(first, model_type="dot") == second
    assert registry.newer_than(second, model_type="dot") is None


def test_empty_registry_loads_nothing(registry):
    assert registry.load_latest() is None
    assert registry.versions() == []


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: (d / "arrays.npz").write_bytes(b"not a zip"), id="garbage-npz"),
        pytest.param(lambda d: (d / "arrays.npz").unlink(), id="missing-npz"),
        pytest.param(lambda d: (d / "metadata.json").write_text("{"), id="truncated-json"),
        pytest.param(lambda d: (d / "metadata.json").unlink(), id="missing-json"),
        pytest.param(
            lambda d: (d / "arrays.npz").write_bytes((d / "arrays.npz").read_bytes()[:-40]),
            id="truncated-npz",
        ),
    ],
)
def test_corrupt_newest_version_is_skipped_with_a_warning(registry, caplog, damage):
    good = publish(registry).version
    bad = publish(registry).version
    damage(registry.root / bad)
    with caplog.at_level(logging.WARNING, logger="recsys.store.artifacts"):
        loaded = registry.load_latest()
    assert loaded.metadata.version == good
    assert any(bad in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_an_artifact_holding_a_pickle_is_refused(registry):
    good = publish(registry).version
    bad = publish(registry).version
    directory = registry.root / bad
    # Forge a consistent artifact whose array needs unpickling to load.
    forged = directory / "forged.npz"
    arrays = {
        "user_ids": np.array([{"evil": 1}], dtype=object),
        "product_ids": np.arange(1, 3),
        "user_factors": np.zeros((1, 2)),
        "item_factors": np.zeros((2, 2)),
    }
    np.savez(forged, **{f"model.{name}": value for name, value in arrays.items()})
    payload = forged.read_bytes()
    forged.unlink()
    (directory / "arrays.npz").write_bytes(payload)
    meta = json.loads((directory / "metadata.json").read_text())
    meta["arrays_sha256"] = hashlib.sha256(payload).hexdigest()
    (directory / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError):
        registry.load(bad)
    assert registry.load_latest().metadata.version == good


def test_unknown_model_type_is_an_artifact_error(tmp_path):
    writer = ModelRegistry(tmp_path, model_classes={"dot": DotProductModel})
    version = publish(writer).version
    reader = ModelRegistry(tmp_path, model_classes={})
    with pytest.raises(ArtifactError, match="unknown model type 'dot'"):
        reader.load(version)


_PUBLISH_A_MODEL = """
from test_registry import fitted_model
from recsys.store.artifacts import ModelRegistry
ModelRegistry({root!r}, model_classes={{}}).publish(
    fitted_model(n_users=50, n_items=40).get_state(), data_fingerprint="x")
"""


@pytest.mark.slow
def test_publisher_killed_mid_write_leaves_the_previous_version_loadable(registry, tmp_path):
    previous = publish(registry).version
    status = kill_mid_write(
        _PUBLISH_A_MODEL.format(root=str(registry.root)),
        paths=[str(Path(__file__).parent), str(ROOT)],
    )
    assert status == -9
    leftovers = [p for p in registry.root.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the child should have died with its temporary directory in place"
    assert registry.versions() == [previous]
    assert registry.load_latest().metadata.version == previous
    # The next publish still works and takes the next number.
    assert publish(registry).version.startswith("v00002-")


def test_stale_temporary_directories_are_removed_on_publish(registry):
    publish(registry)
    stale = registry.root / ".tmp-999-1"
    stale.mkdir()
    os.utime(stale, (0, 0))
    publish(registry)
    assert not stale.exists()
