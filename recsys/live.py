"""The model being served, swapped in one step while requests keep reading it.

A ``ServingModel`` is immutable once built: the model rebuilt from a published
artifact plus that artifact's metadata. ``LiveModel`` holds one reference to
the current bundle; a retrain builds the next bundle completely, then replaces
the reference. A request reads the reference once and uses that bundle
throughout, so it sees one whole version, never a mix or a half-built model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from recsys.models.base import Recommender
from recsys.registry import ArtifactMetadata, LoadedArtifact, ModelRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    """A model ready to answer, with the metadata of the artifact it came from."""

    model: Recommender
    metadata: ArtifactMetadata

    @property
    def version(self) -> str:
        return self.metadata.version

    @classmethod
    def from_artifact(cls, artifact: LoadedArtifact) -> ServingModel:
        """Wrap a loaded artifact."""
        return cls(model=artifact.model, metadata=artifact.metadata)


class LiveModel:
    """Holds the serving model; readers never lock, writers swap one reference."""

    def __init__(self, initial: ServingModel | None = None):
        self._current = initial
        self._swap_lock = threading.Lock()

    def current(self) -> ServingModel | None:
        """Return the bundle to answer with (read once per request)."""
        # A single attribute read is atomic in CPython: no lock on the hot path.
        return self._current

    def swap(self, bundle: ServingModel) -> ServingModel | None:
        """Make a fully built bundle the live one.

        Args:
            bundle: The new model and its metadata.

        Returns:
            The bundle it replaced.
        """
        with self._swap_lock:
            previous = self._current
            self._current = bundle
        logger.info(
            "serving model %s (was %s)", bundle.version, previous.version if previous else None
        )
        return previous

    def swap_to_version(self, registry: ModelRegistry, version: str) -> ServingModel:
        """Load a published version from disk and make it live.

        Serving what was loaded back from the artifact, not the in-memory
        object training produced, guarantees the live model is exactly what
        a restart would serve.

        Args:
            registry: Where the version is.
            version: The version id.

        Returns:
            The new live bundle.
        """
        bundle = ServingModel.from_artifact(registry.load(version))
        self.swap(bundle)
        return bundle
