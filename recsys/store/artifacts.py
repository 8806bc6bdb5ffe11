"""Model artifacts on disk: publish atomically, keep the last N, load the newest valid.

An artifact is one directory per published version::

    <root>/v00007-20261129T103100Z/
        arrays.npz      the model's learned arrays and id maps (uncompressed, no pickles)
        metadata.json   model type, parameters, version, trained_at, data
                        fingerprint, offline metrics, the arrays' SHA-256

A version is written under a temporary name, every file and the directory are
fsynced, and only then is it renamed into place: a reader sees a whole version
or none, and a crash mid-write leaves only a temporary directory that loading
ignores. A version the quality gate rejected (``metadata.gate``) is written
the same way into ``<root>/rejected/`` instead: it takes its number from the
one sequence, so ids never clash, and is read for inspection only. Nothing
that serves (``versions``, ``newer_than``, ``load``, ``load_latest``) looks
there, so a rejected version never goes live, here or after a restart.

The publisher checks the arrays (``validate_state``: shapes, id maps,
finite numbers; arrays given in blocks as the written file holds them, block
by block, before the version is renamed into place) and records the file's
SHA-256. Loading maps the arrays
read-only in place (no pickles, no copy: the processes serving a version share
one copy, the page cache) once the file matches its checksum (whole up to 64
MiB, sampled above): an artifact never runs code, and a damaged one, or one
whose arrays ``from_state`` refuses, is skipped. Only real directories and
files directly inside the root are read, never symbolic links, so a version
cannot be loaded from elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.files import make_writable_dir
from recsys.models.base import Recommender
from recsys.models.state import ModelState, StateArray
from recsys.store.artifact_files import (
    FALLBACK_PREFIX,
    MODEL_PREFIX,
    ArtifactError,
    ModelDirectoryError,
    archive_arrays,
    catalog_from_arrays,
    check_before_publishing,
    check_streamed_arrays,
    fsync_path,
    has_streamed_arrays,
    map_arrays,
    read_regular_file,
    write_arrays,
    write_synced,
)
from recsys.store.artifact_metadata import REJECTED, ArtifactMetadata

logger = logging.getLogger(__name__)

ARRAYS_FILE = "arrays.npz"
METADATA_FILE = "metadata.json"
_VERSION_RE = re.compile(r"v(\d{5,})-\d{8}T\d{6}Z")  # matched whole (fullmatch)
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
# The shelf of versions the quality gate rejected, inside the root.
REJECTED_DIR = REJECTED
# A temporary directory this old is a crashed publisher's leftover, not a
# publish in progress (publishing takes well under a second).
_STALE_TMP_SECONDS = 600


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
        self.rejected_root = self.root / REJECTED_DIR
        self.keep = keep
        self._model_classes = model_classes
        self._in_use = in_use
        # Version -> the arrays checksum its metadata recorded when it failed
        # to load. Published versions do not change, so newer_than can pass
        # over them until their metadata records other arrays.
        self._rejected: dict[str, str] = {}

    def ensure_root(self) -> None:
        """Create the directory if it is missing, and check that this process can write in it.

        Raises:
            ModelDirectoryError: It cannot be created, or files cannot be made in it.
        """
        try:
            make_writable_dir(self.root)
        except OSError as exc:
            raise ModelDirectoryError(self.root, exc) from None

    @property
    def model_classes(self) -> Mapping[str, type[Recommender]]:
        if self._model_classes is None:
            self._model_classes = _default_model_classes()
        return self._model_classes

    # -- listing -------------------------------------------------------------

    def versions(self) -> list[str]:
        """Return the published version ids, newest first (never a rejected one).

        Only real directories directly inside the root count: an entry named
        like a version that is a symbolic link (or a file) is ignored.
        """
        return self._listed(self.root)

    def rejected_versions(self) -> list[str]:
        """Return the ids of the versions the quality gate rejected, newest first."""
        return self._listed(self.rejected_root)

    def _listed(self, shelf: Path) -> list[str]:
        root = shelf.resolve()
        named = [
            (n, path.name)
            for n, path in self._version_entries(shelf)
            if not path.is_symlink() and path.is_dir() and path.resolve().parent == root
        ]
        return [name for _, name in sorted(named, reverse=True)]

    def _version_entries(self, shelf: Path) -> list[tuple[int, Path]]:
        """Return (number, path) of every entry named like a version, whatever it is."""
        if not shelf.is_dir():
            return []
        return [(n, p) for p in shelf.iterdir() if (n := version_number(p.name)) is not None]

    def _version_dir(self, version: str, rejected: bool = False) -> Path:
        """Return a version's directory, if it is a real one directly inside the root.

        Raises:
            ArtifactError: ``version`` is not a version id, or its entry is a
                symbolic link or resolves outside the root.
        """
        if version_number(version) is None:
            raise ArtifactError(f"{version!r} is not a version id")
        shelf = self.rejected_root if rejected else self.root
        directory = shelf / version
        if directory.is_symlink():
            raise ArtifactError(
                f"{directory}: is a symbolic link; versions are read only from "
                f"directories inside {shelf}"
            )
        if directory.resolve().parent != shelf.resolve():
            raise ArtifactError(f"{directory}: resolves outside {shelf}")
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
        gate: Mapping[str, Any] | None = None,
    ) -> ArtifactMetadata:
        """Write a fitted model as the newest version, atomically.

        A version whose ``gate`` record says ``rejected`` goes on the rejected
        shelf, where nothing serves it from.

        Args:
            state: ``model.get_state()``; ``params["model"]`` names the model
                type. Arrays in ``state.streamed`` are written block by block.
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
            gate: The quality gate's record (its decision and both figures).

        Returns:
            The published version's metadata.
        """
        model_type = state.params.get("model")
        if model_type is None or (fallback is not None and "model" not in fallback.params):
            raise ArtifactError("model state has no params['model'] naming its type")
        self.ensure_root()
        self._remove_stale_temporaries()
        finished = (trained_at or datetime.now(UTC)).astimezone(UTC)

        arrays = archive_arrays(state, fallback, catalog)
        streamed = has_streamed_arrays(state, fallback)
        if not streamed:  # arrays in blocks are checked as written, before the rename
            check_before_publishing(self.model_classes, state, fallback)
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
            selected_by=selected_by,
            selection=dict(selection or {}),
            gate=dict(gate or {}),
        )
        shelf = self.rejected_root if template.rejected else self.root
        shelf.mkdir(exist_ok=True)

        def check_written(path: Path) -> None:
            if streamed:
                check_streamed_arrays(self.model_classes, state, fallback, path)

        meta = self._write_version(arrays, finished, template, shelf, check_written)
        self._prune(self.root)
        self._prune(self.rejected_root)
        if meta.rejected:
            logger.warning("kept model %s (%s) as rejected", meta.version, model_type)
        else:
            logger.info("published model %s (%s)", meta.version, model_type)
        return meta

    def _write_version(
        self,
        arrays: Mapping[str, StateArray],
        finished: datetime,
        template: ArtifactMetadata,
        shelf: Path,
        check_written: Callable[[Path], None],
    ) -> ArtifactMetadata:
        """Write the arrays and metadata under a temporary name, then rename them into ``shelf``.

        ``check_written`` is given the written arrays file before anything else
        is written; what it raises discards the version.

        Returns:
            The metadata of the version the directory was renamed to.
        """
        tmp = self.root / f"{_TMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir()
        try:
            sha256, sampled = write_arrays(tmp / ARRAYS_FILE, arrays)
            check_written(tmp / ARRAYS_FILE)
            template = dataclasses.replace(
                template, arrays_sha256=sha256, arrays_sampled_sha256=sampled
            )
            while True:
                meta = dataclasses.replace(template, version=self._next_version(finished))
                text = json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n"
                write_synced(tmp / METADATA_FILE, text.encode("utf-8"))
                fsync_path(tmp)
                try:
                    # Renaming a directory onto an existing non-empty one fails,
                    # so two publishers racing for a number never overwrite.
                    os.rename(tmp, shelf / meta.version)
                    break
                except OSError:
                    if not os.path.lexists(shelf / meta.version):
                        raise
            fsync_path(shelf)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return meta

    def _next_version(self, when: datetime) -> str:
        # Past every entry named like a version, links included, on both
        # shelves, so a new version never takes the name of something there.
        entries = self._version_entries(self.root) + self._version_entries(self.rejected_root)
        number = max((n for n, _ in entries), default=0) + 1
        return f"v{number:05d}-{when.strftime('%Y%m%dT%H%M%SZ')}"

    def _prune(self, shelf: Path) -> None:
        old = self._listed(shelf)[self.keep :]
        if not old:
            return
        # An A/B test pins published versions only.
        in_use = self._in_use() if self._in_use is not None and shelf == self.root else ()
        if in_use is None:
            logger.warning("could not tell which model versions are in use: none deleted")
            return
        for version in old:
            if version in in_use:
                continue
            doomed = self.root / f"{_TRASH_PREFIX}{version}-{time.monotonic_ns()}"
            try:
                # Rename first: the version disappears in one step, then is deleted.
                os.rename(shelf / version, doomed)
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

    def read_metadata(self, version: str, rejected: bool = False) -> ArtifactMetadata:
        """Return one version's metadata (of a rejected one with ``rejected``).

        Raises:
            ArtifactError: The metadata is missing, unreadable or a symbolic
                link, or the version's directory is a link or outside the root.
        """
        path = self._version_dir(version, rejected) / METADATA_FILE
        try:
            data = json.loads(read_regular_file(path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: unreadable metadata ({exc})") from None
        if not isinstance(data, dict):
            raise ArtifactError(f"{path}: metadata is not a JSON object")
        meta = ArtifactMetadata.from_dict(data)
        if meta.version != version:
            raise ArtifactError(f"{path}: metadata names version {meta.version!r}")
        if meta.rejected != rejected:
            # A rejected version's directory copied among the published ones
            # still never serves.
            raise ArtifactError(f"{path}: the quality gate's decision does not match its shelf")
        return meta

    def last_gate_decision(self) -> ArtifactMetadata | None:
        """Return the newest version, published or rejected, that the quality gate judged."""
        shelves = [(v, False) for v in self.versions()[: self.keep]]
        shelves += [(v, True) for v in self.rejected_versions()[: self.keep]]
        shelves.sort(key=lambda entry: version_number(entry[0]) or 0, reverse=True)
        for version, rejected in shelves:
            try:
                meta = self.read_metadata(version, rejected)
            except ArtifactError:
                continue
            if meta.gate:
                return meta
        return None

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
        try:
            artifact = self._rebuild_artifact(meta, directory)
        except ArtifactError:
            self._rejected[version] = meta.arrays_sha256
            raise
        self._rejected.pop(version, None)
        return artifact

    def _rebuild_artifact(self, meta: ArtifactMetadata, directory: Path) -> LoadedArtifact:
        arrays = map_arrays(directory / ARRAYS_FILE, meta.arrays_sha256, meta.arrays_sampled_sha256)
        try:
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
