"""What a model artifact says about itself: ``metadata.json``'s fields.

Kept apart from the registry (``recsys.store.artifacts``) that writes and
reads it; the registry's module re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.models.base import AUTO
from recsys.store.artifact_files import ArtifactError

ARTIFACT_FORMAT = 1
# The quality gate's decision that keeps a version from going live.
REJECTED = "rejected"


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
        arrays_sampled_sha256: Checksum of its size and sampled blocks (the
            cheap check of a large file; empty in versions published before it).
        format: The artifact layout version.
        selected_by: How the model type was chosen: None when it was
            configured, "auto" when it won the automatic selection.
        selection: For "auto": the metric, the reason the champion won and
            every candidate's metrics (``{"metric", "reason", "candidates"}``).
        gate: The quality gate's record (``recsys.training.gate``): its
            decision (``accepted``, ``rejected`` or ``forced``), the metric,
            the tolerance, the candidate's and the live version's figures on
            the same held-out split, and why; empty when no gate ran.
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
    arrays_sampled_sha256: str = ""
    format: int = ARTIFACT_FORMAT
    selected_by: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        """Whether the quality gate kept this version from going live."""
        return self.gate.get("decision") == REJECTED

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
