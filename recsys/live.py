"""The model being served, swapped in one step while requests keep reading it.

A ``ServingModel`` is immutable once built: a ``RecommendationService`` over
the models of one published artifact, plus that artifact's metadata.
``LiveModel`` holds one reference to the current bundle; a retrain builds the
next bundle completely, then replaces the reference. A request reads the
reference once and uses that bundle throughout, so it sees one whole version,
never a mix or a half-built model.

``LiveRecommendationService`` is what the web layer calls: it answers from
the live bundle, reads the user's purchases from the event store on every
request (so a purchase posted a moment ago is already excluded), names the
model version in every answer, and tells a user who has events but is not in
the model yet apart from a user it has never heard of.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass

from recsys.models.popularity import PopularityRecommender
from recsys.registry import ArtifactMetadata, LoadedArtifact, ModelRegistry, version_number
from recsys.service import (
    UNKNOWN_USER,
    RecommendationAnswer,
    RecommendationService,
    RecommendedProduct,
)
from recsys.store import EventStore

logger = logging.getLogger(__name__)

# The user has recorded events, but joined after the live model was trained.
NOT_IN_MODEL = "not_in_model"


class NoLiveModelError(RuntimeError):
    """A request arrived before any model was made live (a start-up bug)."""


@dataclass(frozen=True)
class ServingModel:
    """One published version, ready to answer."""

    service: RecommendationService
    metadata: ArtifactMetadata

    @property
    def version(self) -> str:
        return self.metadata.version


class LiveModel:
    """Holds the serving bundle; readers never lock, writers swap one reference."""

    def __init__(self) -> None:
        self._current: ServingModel | None = None
        self._swap_lock = threading.Lock()

    def current(self) -> ServingModel:
        """Return the bundle to answer with (read it once per request).

        Raises:
            NoLiveModelError: Nothing was made live yet.
        """
        # One attribute read is atomic in CPython: no lock on the hot path.
        bundle = self._current
        if bundle is None:
            raise NoLiveModelError("no model is live yet")
        return bundle

    def swap(self, bundle: ServingModel, only_if_newer: bool = False) -> ServingModel | None:
        """Make a fully built bundle the live one and return the one it replaced.

        Args:
            bundle: The new bundle.
            only_if_newer: Keep the live bundle when it is the same or a later
                version (a slow poller must not undo a fresher swap).
        """
        with self._swap_lock:
            previous = self._current
            if only_if_newer and previous is not None and (
                (version_number(bundle.version) or 0) <= (version_number(previous.version) or 0)
            ):
                return previous
            self._current = bundle
        logger.info("serving model %s (was %s)", bundle.version,
                    previous.version if previous else None)
        return previous


class LiveRecommendationService:
    """Answers recommendation requests from the live model and the event store.

    Args:
        store: Where purchases, users and the catalog are read from.
        live: The holder of the serving bundle (a new one by default).
    """

    def __init__(self, store: EventStore, live: LiveModel | None = None):
        self.store = store
        self.live = live or LiveModel()

    def build(self, artifact: LoadedArtifact) -> ServingModel:
        """Build a complete serving bundle from a loaded artifact (not yet live)."""
        popularity = artifact.fallback
        if popularity is None and isinstance(artifact.model, PopularityRecommender):
            popularity = artifact.model
        if not isinstance(popularity, PopularityRecommender):
            raise ValueError(
                f"artifact {artifact.metadata.version} has no popularity fallback to serve "
                "unknown users"
            )
        service = RecommendationService(
            artifact.model, popularity, self.store.products_frame(), self.store.purchased_products
        )
        return ServingModel(service=service, metadata=artifact.metadata)

    def serve(self, artifact: LoadedArtifact, only_if_newer: bool = False) -> ServingModel:
        """Build a bundle from an artifact and make it live in one step."""
        bundle = self.build(artifact)
        self.live.swap(bundle, only_if_newer=only_if_newer)
        return bundle

    def serve_version(self, registry: ModelRegistry, version: str) -> ServingModel:
        """Load a published version from disk and make it live.

        Serving what was loaded back from the artifact, not the object that
        training built in memory, guarantees the live model is exactly what a
        restart would serve.
        """
        return self.serve(registry.load(version))

    @property
    def metadata(self) -> ArtifactMetadata:
        """Return the live version's metadata."""
        return self.live.current().metadata

    def recommend(self, user_id: int, n: int) -> RecommendationAnswer:
        """Return the n best products for a user from the live model version.

        Args:
            user_id: The user.
            n: How many products.

        Returns:
            The answer, with ``model_version`` and, for a user with events who
            is not in the model, ``fallback_reason="not_in_model"``.
        """
        bundle = self.live.current()
        answer = bundle.service.recommend(user_id, n)
        reason = answer.fallback_reason
        if reason == UNKNOWN_USER and self.store.has_user_events(user_id):
            reason = NOT_IN_MODEL
        return dataclasses.replace(
            answer,
            fallback_reason=reason,
            model_version=bundle.version,
        )

    def popular(self, n: int) -> list[RecommendedProduct]:
        """Return the n most-clicked products as of the live model's training."""
        return self.live.current().service.popular(n)
