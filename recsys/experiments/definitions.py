"""Experiment definitions: metrics, strategies, variants, and validation of a definition.

An experiment names its variants (the first is control), each with a weight
and a strategy: ``champion`` (the live model, following retrains),
``popular`` (the live version's popularity list), ``model`` (the newest
published version of a model type, trained now if there is none, then pinned
for the whole experiment) or ``version`` (one published version).
``experiment_from_spec`` checks a definition at the boundary and computes
its planned sample size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recsys.data.timestamps import format_utc, utc_now
from recsys.errors import RecsysError, quote
from recsys.experiments import abstats
from recsys.models import canonical_model_name

CONVERSION, CLICK_THROUGH = "conversion", "click_through"
METRICS = (CONVERSION, CLICK_THROUGH)
CHAMPION, POPULAR, MODEL, VERSION = "champion", "popular", "model", "version"
STRATEGIES = (CHAMPION, POPULAR, MODEL, VERSION)
MAX_VARIANTS = 5
NAME_CHARS = 64
# Weights are relative shares; bounded so that every share is a usable
# fraction and no sum of them overflows.
MIN_WEIGHT, MAX_WEIGHT = 0.001, 1000.0
# Below this an experiment would need billions of users per variant (and a
# smaller lift cannot be told from rounding in the power computation).
MIN_MDE = 0.0001


class InvalidExperimentError(RecsysError, ValueError):
    """An experiment definition is malformed (a 400 for the API); the message names the field."""


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment.

    Attributes:
        name: Shown in answers and the report.
        weight: Relative share of users (any positive scale).
        strategy: ``champion``, ``popular``, ``model`` or ``version``.
        model: For ``model``: the model type.
        version: For ``version``, and ``model`` once started: the published version served.
    """

    name: str
    weight: float
    strategy: str
    model: str | None = None
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "weight": self.weight, "strategy": self.strategy}
        if self.model is not None:
            body["model"] = self.model
        if self.version is not None:
            body["version"] = self.version
        return body


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored.

    Attributes:
        name: Unique; also the salt of the assignment hash.
        status: ``draft``, ``running`` or ``stopped``.
        metric: The primary metric: ``conversion`` (share of exposed users
            with an attributed purchase) or ``click_through`` (share of served
            lists with an attributed click).
        baseline_rate: Control's expected rate of the primary metric.
        mde: The smallest absolute lift worth detecting.
        planned_per_variant: Units each variant needs (power 0.8, alpha 0.05).
        variants: Control first.
    """

    name: str
    status: str
    metric: str
    baseline_rate: float
    mde: float
    planned_per_variant: int
    variants: tuple[Variant, ...]
    created_at: datetime
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Experiment:
        variants = tuple(Variant(**v) for v in row["variants"])
        fields = {f.name for f in dataclasses.fields(cls)} - {"variants"}
        return cls(variants=variants, **{k: v for k, v in row.items() if k in fields})

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape."""
        return {
            "name": self.name,
            "status": self.status,
            "metric": self.metric,
            "baseline_rate": self.baseline_rate,
            "mde": self.mde,
            "planned_per_variant": self.planned_per_variant,
            "unit": "users" if self.metric == CONVERSION else "served lists",
            "variants": [v.to_dict() for v in self.variants],
            "created_at": format_utc(self.created_at),
            "started_at": format_utc(self.started_at),
            "stopped_at": format_utc(self.stopped_at),
        }


def experiment_from_spec(spec: Any, now: datetime | None = None) -> Experiment:
    """Validate a definition (the admin endpoint's body) and compute its planned sample size.

    Args:
        spec: ``{"name", "metric", "baseline_rate", "mde", "variants": [{"name",
            "weight", "strategy", "model"?, "version"?}, ...]}``; the first
            variant is control.

    Raises:
        InvalidExperimentError: Naming the first field at fault and what it accepts.
    """
    if not isinstance(spec, Mapping):
        raise InvalidExperimentError("the experiment must be a JSON object")
    accepted = {"name", "metric", "baseline_rate", "mde", "variants"}
    extra = sorted(set(spec) - accepted)
    if extra:
        raise InvalidExperimentError(f"unexpected field(s) {extra}; accepted: {sorted(accepted)}")
    name = _name(spec.get("name"), "name")
    metric = spec.get("metric", CONVERSION)
    if metric not in METRICS:
        raise InvalidExperimentError(
            f"metric must be one of {', '.join(METRICS)}, got {quote(metric)}"
        )
    baseline = _rate(spec.get("baseline_rate"), "baseline_rate")
    mde = _rate(spec.get("mde"), "mde")
    if mde < MIN_MDE:
        raise InvalidExperimentError(f"mde must be at least {MIN_MDE}, got {quote(mde)}")
    try:
        planned = abstats.sample_size_per_variant(baseline, mde)
    except ValueError as exc:
        raise InvalidExperimentError(str(exc)) from None
    raw_variants = spec.get("variants")
    if not isinstance(raw_variants, list) or not 2 <= len(raw_variants) <= MAX_VARIANTS:
        raise InvalidExperimentError(
            f"variants must be an array of 2 to {MAX_VARIANTS} variants, control first"
        )
    variants = tuple(_variant(v, i) for i, v in enumerate(raw_variants))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise InvalidExperimentError(f"variant names must differ, got {names}")
    return Experiment(
        name=name,
        status="draft",
        metric=metric,
        baseline_rate=baseline,
        mde=mde,
        planned_per_variant=planned,
        variants=variants,
        created_at=now or utc_now(),
    )


def _name(value: Any, field: str) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= NAME_CHARS
        or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)
    ):
        raise InvalidExperimentError(
            f"{field} must be 1 to {NAME_CHARS} ASCII letters, digits, '-', '_' or '.', "
            f"got {quote(value)}"
        )
    return value


def _rate(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InvalidExperimentError(
            f"{field} must be a number between 0 and 1, got {quote(value)}"
        )
    return float(value)


def _variant(value: Any, index: int) -> Variant:
    where = f"variants[{index}]"
    if not isinstance(value, Mapping):
        raise InvalidExperimentError(f"{where} must be a JSON object")
    extra = sorted(set(value) - {"name", "weight", "strategy", "model", "version"})
    if extra:
        raise InvalidExperimentError(f"{where}: unexpected field(s) {extra}")
    name = _name(value.get("name"), f"{where}.name")
    weight = value.get("weight", 1)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not MIN_WEIGHT <= weight <= MAX_WEIGHT
    ):
        raise InvalidExperimentError(
            f"{where}.weight must be a number from {MIN_WEIGHT} to {MAX_WEIGHT:g}, "
            f"got {quote(weight)}"
        )
    strategy = value.get("strategy")
    if strategy not in STRATEGIES:
        raise InvalidExperimentError(
            f"{where}.strategy must be one of {', '.join(STRATEGIES)}, got {quote(strategy)}"
        )
    model = value.get("model")
    version = value.get("version")
    if strategy == MODEL:
        if not isinstance(model, str):
            raise InvalidExperimentError(f"{where}.model names the model type of strategy model")
        try:
            model = canonical_model_name(model)
        except ValueError as exc:
            raise InvalidExperimentError(f"{where}.model: {exc}") from None
        version = None  # pinned when the experiment starts
    elif model is not None:
        raise InvalidExperimentError(f"{where}.model is only for strategy model")
    if strategy == VERSION:
        if not isinstance(version, str) or not 1 <= len(version) <= NAME_CHARS:
            raise InvalidExperimentError(
                f"{where}.version names the published version to serve "
                f"(1 to {NAME_CHARS} characters)"
            )
    elif version is not None and strategy != MODEL:
        raise InvalidExperimentError(f"{where}.version is only for strategy version")
    return Variant(name, float(weight), strategy, model, version)
