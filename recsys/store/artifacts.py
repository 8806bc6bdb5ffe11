"""Model artifacts on disk: publish atomically, keep the last N, load the newest valid.

An artifact is one directory per published version::

    <root>/v00007-20261129T103100Z/
        arrays.npz      the model's learned arrays and id maps (no pickles)
        metadata.json   model type, parameters, version, trained_at, data
                        fingerprint, offline metrics, the arrays' SHA-256

A version is written under a temporary name, every file and the directory are
fsynced, and only then is it renamed into place: a reader sees a whole version
or none, and a crash mid-write leaves only a temporary directory that loading
ignores. Arrays are read with ``np.load(..., allow_pickle=False)`` and checked
against their recorded checksum, so an artifact can never run code and a
damaged one is detected and skipped. Arrays that pass the checksum are still
checked before a model is built from them (``Recommender.validate_state`` and
the catalog's columns): a version whose arrays could not be served is skipped
like a damaged one. Only real directories and files directly inside the root
are read, never symbolic links, so a version cannot be loaded from elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.models.base import AUTO, Recommender
from recsys.models.state import ModelState
from recsys.store.artifact_files import (
    FALLBACK_PREFIX,
    MODEL_PREFIX,
    ArtifactError,
    catalog_from_arrays,
    fsync_path,
    read_regular_file,
    write_arrays,
    write_synced,
)

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
ARRAYS_FILE = "arrays.npz"
METADATA_FILE = "metadata.json"
_VERSION_RE = re.compile(r"v(\d{5,})-\d{8}T\d{6}Z")  # matched whole (fullmatch)
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
# A temporary directory this old is a crashed publisher's leftover, not a
# publish in progress (publishing takes well under a second).
_STALE_TMP_SECONDS = 600


@dataclass(frozen=True)
class ArtifactMetadata:
    """What a published model is and how it was made.

    Attributes:
        version: The version id, for example ``v00007-20261129T103100Z``.
        model_type: The model's name, a key of the model classes.
        params: The model's hyper-parameters.
        trained_at: ISO-8601 UTC time training finished.
        data_fingerprint: A digest of the training interactions.
        metrics: Offline metrics measured at training time.
        training: Facts about the training run (row counts, seconds).
        fallback_type: The model type of the cold-start fallback stored
            alongside, if any.
        fallback_params: Its hyper-parameters.
        arrays_sha256: Checksum of ``arrays.npz``.
        format: The artifact layout version.
        selected_by: How the model type was chosen: None when it was
            configured, "auto" when it won the automatic selection.
        selection: For "auto": the metric, the reason the champion won and
            every candidate's metrics (``{"metric", "reason", "candidates"}``).
    """

    version: str
    model_type: str
    params: dict[str, Any]
    trained_at: str
    data_fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    fallback_type: str | None = None
    fallback_params: dict[str, Any] = field(default_factory=dict)
    arrays_sha256: str = ""
    format: int = ARTIFACT_FORMAT
    selected_by: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)

    def serves(self, model_type: str | None) -> bool:
        """Return whether this version answers for a configured model type.

        None matches every version; "auto" matches versions the automatic
        selection chose, whatever model won; any other name its model type.
        """
        if model_type is None:
            return True
        if model_type == AUTO:
            return self.selected_by == AUTO
        return self.model_type == model_type

    def to_dict(self) -> dict[str, Any]:
        """Return the metadata as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactMetadata:
        """Rebuild metadata from ``to_dict``'s output.

        Raises:
            ArtifactError: A required field is missing or the format is unknown.
        """
        try:
            meta = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise ArtifactError(f"metadata is incomplete: {exc}") from None
        if meta.format != ARTIFACT_FORMAT:
            raise ArtifactError(f"artifact format {meta.format} is not {ARTIFACT_FORMAT}")
        return meta


@dataclass(frozen=True)
class LoadedArtifact:
    """A model (and its fallback, if stored) rebuilt from an artifact, with its metadata."""

    model: Recommender
    metadata: ArtifactMetadata
    path: Path
    fallback: Recommender | None = None
    catalog: pd.DataFrame | None = None


def _default_model_classes() -> Mapping[str, type[Recommender]]:
    from recsys.models import MODELS  # the models package imports heavy libraries

    return MODELS


def version_number(name: str) -> int | None:
    """Return the publish sequence number of a version id, or None if it is not one."""
    match = _VERSION_RE.fullmatch(name)
    return int(match.group(1)) if match else None


class ModelRegistry:
    """Publishes and loads model artifacts under one directory.

    Args:
        root: The artifact directory (created when missing).
        keep: How many published versions to keep (older ones are deleted).
        model_classes: Model name -> class, to rebuild models; defaults to
            ``recsys.models.MODELS``.
        in_use: Returns the versions that must outlive ``keep`` (a running
            A/B test's pinned ones), or None when that cannot be told (then
            nothing is deleted this time).
    """

    def __init__(
        self,
        root: str | Path,
        keep: int = 5,
        model_classes: Mapping[str, type[Recommender]] | None = None,
        in_use: Callable[[], Collection[str] | None] | None = None,
    ):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.root = Path(root)
        self.keep = keep
        self._model_classes = model_classes
        self._in_use = in_use
        # Version -> the arrays checksum its metadata recorded when it failed
        # to load. Published versions do not change, so newer_than can pass
        # over them until their metadata records other arrays.
        self._rejected: dict[str, str] = {}

    @property
    def model_classes(self) -> Mapping[str, type[Recommender]]:
        if self._model_classes is None:
            self._model_classes = _default_model_classes()
        return self._model_classes

    # -- listing -------------------------------------------------------------

    def versions(self) -> list[str]:
        """Return the published version ids, newest first.

        Only real directories directly inside the root count: an entry named
        like a version that is a symbolic link (or a file) is ignored.
        """
        root = self.root.resolve()
        named = [
            (n, path.name)
            for n, path in self._version_entries()
            if not path.is_symlink() and path.is_dir() and path.resolve().parent == root
        ]
        return [name for _, name in sorted(named, reverse=True)]

    def _version_entries(self) -> list[tuple[int, Path]]:
        """Return (number, path) of every entry named like a version, whatever it is."""
        if not self.root.is_dir():
            return []
        return [(n, p) for p in self.root.iterdir() if (n := version_number(p.name)) is not None]

    def _version_dir(self, version: str) -> Path:
        """Return a version's directory, if it is a real one directly inside the root.

        Raises:
            ArtifactError: ``version`` is not a version id, or its entry is a
                symbolic link or resolves outside the root.
        """
        if version_number(version) is None:
            raise ArtifactError(f"{version!r} is not a version id")
        directory = self.root / version
        if directory.is_symlink():
            raise ArtifactError(
                f"{directory}: is a symbolic link; versions are read only from "
                f"directories inside {self.root}"
            )
        if directory.resolve().parent != self.root.resolve():
            raise ArtifactError(f"{directory}: resolves outside {self.root}")
        return directory

    # -- publishing ----------------------------------------------------------

    def publish(
        self,
        state: ModelState,
        data_fingerprint: str,
        metrics: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        trained_at: datetime | None = None,
        fallback: ModelState | None = None,
        catalog: pd.DataFrame | None = None,
        selected_by: str | None = None,
        selection: Mapping[str, Any] | None = None,
    ) -> ArtifactMetadata:
        """Write a fitted model as the newest version, atomically.

        Args:
            state: ``model.get_state()``; ``params["model"]`` names the model type.
            data_fingerprint: Digest of the training data.
            metrics: Offline metrics to record.
            training: Facts about the run to record (row counts, seconds).
            trained_at: When training finished (default: now).
            fallback: A second model trained on the same data (the cold-start
                fallback), stored in the same version so both always match.
            catalog: ``product_id, name, category`` at training time (missing
                names are stored as empty text).
            selected_by: "auto" when the automatic selection chose the model.
            selection: The selection's metric, reason and candidates' metrics.

        Returns:
            The published version's metadata.
        """
        model_type = state.params.get("model")
        if model_type is None or (fallback is not None and "model" not in fallback.params):
            raise ArtifactError("model state has no params['model'] naming its type")
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        finished = (trained_at or datetime.now(UTC)).astimezone(UTC)

        tmp = self.root / f"{_TMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            sha256 = write_arrays(tmp / ARRAYS_FILE, state, fallback, catalog)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        template = ArtifactMetadata(
            version="",  # given when a number is claimed
            model_type=str(model_type),
            params={k: v for k, v in state.params.items() if k != "model"},
            trained_at=finished.isoformat().replace("+00:00", "Z"),
            data_fingerprint=data_fingerprint,
            metrics=dict(metrics or {}),
            training=dict(training or {}),
            fallback_type=str(fallback.params["model"]) if fallback else None,
            fallback_params=(
                {k: v for k, v in fallback.params.items() if k != "model"} if fallback else {}
            ),
            arrays_sha256=sha256,
            selected_by=selected_by,
            selection=dict(selection or {}),
        )
        meta = self._write_version(tmp, finished, template)
        self._prune()
        logger.info("published model %s (%s)", meta.version, model_type)
        return meta

    def _write_version(
        self,
        tmp: Path,
        finished: datetime,
        template: ArtifactMetadata,
    ) -> ArtifactMetadata:
        """Write the metadata beside the arrays in ``tmp``, then rename the folder into place.

        Returns:
            The metadata of the version the directory was renamed to.
        """
        try:
            while True:
                meta = dataclasses.replace(template, version=self._next_version(finished))
                text = json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n"
                write_synced(tmp / METADATA_FILE, text.encode("utf-8"))
                fsync_path(tmp)
                try:
                    # Renaming a directory onto an existing non-empty one fails,
                    # so two publishers racing for a number never overwrite.
                    os.rename(tmp, self.root / meta.version)
                    break
                except OSError:
                    if not os.path.lexists(self.root / meta.version):
                        raise
            fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return meta

    def _next_version(self, when: datetime) -> str:
        # Past every entry named like a version, links included, so a new
        # version never takes the name of something already there.
        number = max((n for n, _ in self._version_entries()), default=0) + 1
        return f"v{number:05d}-{when.strftime('%Y%m%dT%H%M%SZ')}"

    def _prune(self) -> None:
        old = self.versions()[self.keep :]
        if not old:
            return
        in_use = self._in_use() if self._in_use is not None else ()
        if in_use is None:
            logger.warning("could not tell which model versions are in use: none deleted")
            return
        for version in old:
            if version in in_use:
                continue
            doomed = self.root / f"{_TRASH_PREFIX}{version}-{time.monotonic_ns()}"
            try:
                # Rename first: the version disappears in one step, then is deleted.
                os.rename(self.root / version, doomed)
            except OSError:
                continue  # another process pruned it already
            shutil.rmtree(doomed, ignore_errors=True)

    def _remove_stale_temporaries(self) -> None:
        cutoff = time.time() - _STALE_TMP_SECONDS
        for path in self.root.iterdir():
            if path.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) and path.is_dir():
                try:
                    if path.stat().st_mtime < cutoff:
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    continue

    # -- loading -------------------------------------------------------------

    def read_metadata(self, version: str) -> ArtifactMetadata:
        """Return one version's metadata.

        Raises:
            ArtifactError: The metadata is missing, unreadable or a symbolic
                link, or the version's directory is a link or outside the root.
        """
        path = self._version_dir(version) / METADATA_FILE
        try:
            data = json.loads(read_regular_file(path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: unreadable metadata ({exc})") from None
        if not isinstance(data, dict):
            raise ArtifactError(f"{path}: metadata is not a JSON object")
        meta = ArtifactMetadata.from_dict(data)
        if meta.version != version:
            raise ArtifactError(f"{path}: metadata names version {meta.version!r}")
        return meta

    def newer_than(self, version: str, model_type: str | None = None) -> str | None:
        """Return the newest published version after ``version`` (of a type), if any.

        Reads only directory names and small metadata files, so it is cheap
        enough to poll. Versions with unreadable metadata are passed over, and
        so are versions that already failed to ``load`` in this registry.
        """
        current = version_number(version) or 0
        for candidate in self.versions():
            if (version_number(candidate) or 0) <= current:
                return None
            try:
                meta = self.read_metadata(candidate)
            except ArtifactError:
                continue  # load_latest logs damaged versions; polling stays quiet
            if self._rejected.get(candidate) == meta.arrays_sha256:
                continue
            if meta.serves(model_type):
                return candidate
        return None

    def load(self, version: str) -> LoadedArtifact:
        """Rebuild the model of one version.

        Raises:
            ArtifactError: The artifact is incomplete, damaged, of an unknown
                type, holds arrays that fail validation, or is reached through
                a symbolic link.
        """
        meta = self.read_metadata(version)
        directory = self._version_dir(version)
        payload = read_regular_file(directory / ARRAYS_FILE)
        try:
            artifact = self._rebuild_artifact(meta, directory, payload)
        except ArtifactError:
            self._rejected[version] = meta.arrays_sha256
            raise
        self._rejected.pop(version, None)
        return artifact

    def _rebuild_artifact(
        self, meta: ArtifactMetadata, directory: Path, payload: bytes
    ) -> LoadedArtifact:
        if hashlib.sha256(payload).hexdigest() != meta.arrays_sha256:
            raise ArtifactError(f"{directory / ARRAYS_FILE}: checksum mismatch (damaged file)")
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            model = self._rebuild("model", meta.model_type, meta.params, arrays, MODEL_PREFIX)
            fallback = None
            if meta.fallback_type is not None:
                fallback = self._rebuild(
                    "fallback model",
                    meta.fallback_type,
                    meta.fallback_params,
                    arrays,
                    FALLBACK_PREFIX,
                )
            catalog = catalog_from_arrays(arrays)
        except (ValueError, KeyError, TypeError, OSError, IndexError) as exc:
            raise ArtifactError(f"{directory}: cannot rebuild the model ({exc})") from None
        return LoadedArtifact(
            model=model, metadata=meta, path=directory, fallback=fallback, catalog=catalog
        )

    def _rebuild(
        self,
        role: str,
        model_type: str,
        params: dict[str, Any],
        arrays: dict[str, np.ndarray],
        prefix: str,
    ) -> Recommender:
        cls = self._model_class(model_type)
        own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            return cls.from_state(ModelState(arrays=own, params={"model": model_type, **params}))
        except ValueError as exc:
            # Name the model: the main one and the fallback hold arrays of the same names.
            raise ValueError(f"{role} {model_type!r}: {exc}") from None

    def load_latest(self, model_type: str | None = None) -> LoadedArtifact | None:
        """Return the newest version that loads, skipping damaged ones with a warning.

        Args:
            model_type: Only consider versions that serve this configured model
                type (None: any; "auto": those the automatic selection chose).

        Returns:
            The newest valid artifact, or None when no version qualifies.
        """
        for version in self.versions():
            try:
                if not self.read_metadata(version).serves(model_type):
                    continue
                return self.load(version)
            except ArtifactError as exc:
                logger.warning("skipping model artifact %s: %s", version, exc)
        return None

    def _model_class(self, model_type: str) -> type[Recommender]:
        classes = self.model_classes
        if model_type in classes:
            return classes[model_type]
        for cls in classes.values():
            if getattr(cls, "name", None) == model_type:
                return cls
        raise ArtifactError(f"unknown model type {model_type!r}; known: {sorted(classes)}")
