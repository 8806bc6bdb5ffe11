"""A/B tests of serving strategies: definitions, assignment, serving each variant, the report.

An experiment names its variants (the first is control), each with a weight
and a strategy: ``champion`` (the live model, following retrains),
``popular`` (the live version's popularity list), ``model`` (the newest
published version of a model type, trained now if there is none, then pinned
for the whole experiment) or ``version`` (one published version). A user's
variant is a hash of (experiment name, user id), so it is the same in every
worker and server and for as long as the experiment runs, without storing it.

``ExperimentLayer.recommend`` is what ``/recommend`` calls. With no
experiment running it costs one attribute read on top of
``RecommendationService.recommend``; the running experiment is read from
the database when one starts or stops in this process and every
``AB_REFRESH_SECONDS`` otherwise. The layer only routes a user to a
pipeline (each variant is one), so a variant's list is made, and cached,
by the same code as any answer; it adds the experiment's name, the variant
and a ``recommendation_id``, and queues the exposure (``exposure_log``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.timestamps import format_utc, utc_now
from recsys.errors import RecsysError
from recsys.experiments import abstats
from recsys.experiments.exposure_log import ExposureLog
from recsys.experiments.records import ExperimentStore
from recsys.models import canonical_model_name
from recsys.online import (
    Pipeline,
    RecommendationAnswer,
    RecommendationService,
    RecommendRequest,
    compact_json,
)
from recsys.store.artifacts import ArtifactMetadata, LoadedArtifact, ModelRegistry

logger = logging.getLogger(__name__)

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
# Latency differences below this are noise of the clock and the scheduler,
# whatever the relative margin says.
LATENCY_TOLERANCE_MS = 1.0


class InvalidExperimentError(RecsysError, ValueError):
    """An experiment definition is malformed (a 400 for the API); the message names the field."""


# -- definitions -------------------------------------------------------------------------------


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
        raise InvalidExperimentError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    baseline = _rate(spec.get("baseline_rate"), "baseline_rate")
    mde = _rate(spec.get("mde"), "mde")
    if mde < MIN_MDE:
        raise InvalidExperimentError(f"mde must be at least {MIN_MDE}, got {mde!r}")
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
            f"got {value!r}"
        )
    return value


def _rate(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InvalidExperimentError(f"{field} must be a number between 0 and 1, got {value!r}")
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
            f"{where}.weight must be a number from {MIN_WEIGHT} to {MAX_WEIGHT:g}, got {weight!r}"
        )
    strategy = value.get("strategy")
    if strategy not in STRATEGIES:
        raise InvalidExperimentError(
            f"{where}.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
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
        if not isinstance(version, str) or not version:
            raise InvalidExperimentError(f"{where}.version names the published version to serve")
    elif version is not None and strategy != MODEL:
        raise InvalidExperimentError(f"{where}.version is only for strategy version")
    return Variant(name, float(weight), strategy, model, version)


# -- assignment ----------------------------------------------------------------------------------


def assignment_point(experiment: str, user_id: int) -> float:
    """Return a user's uniform point in [0, 1) for an experiment (stable across processes)."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Assigner:
    """Maps users to variants by their hashed point and the variants' cumulative weights."""

    def __init__(self, experiment: str, weights: Sequence[float]):
        self.experiment = experiment
        self.bounds = np.cumsum(abstats.weight_shares(weights)).tolist()
        self.bounds[-1] = 1.0

    def index(self, user_id: int) -> int:
        """Return the index of the user's variant."""
        point = assignment_point(self.experiment, user_id)
        for i, bound in enumerate(self.bounds):
            if point < bound:
                return i
        return len(self.bounds) - 1  # pragma: no cover - bounds end at 1.0 > point


# -- serving -------------------------------------------------------------------------------------


class NoSuchExperimentError(RecsysError, LookupError):
    """No experiment has that name (a 404 for the API)."""


@dataclass(frozen=True)
class ExperimentAnswer:
    """An answer served inside an experiment."""

    answer: RecommendationAnswer
    experiment: str
    variant: str
    recommendation_id: str

    def to_dict(self) -> dict[str, Any]:
        body = self.answer.to_dict()
        body["experiment"] = self.experiment
        body["variant"] = self.variant
        body["recommendation_id"] = self.recommendation_id
        return body

    @property
    def json_body(self) -> bytes:
        """Return the answer as compact JSON (made per request: each has its own id)."""
        return compact_json(self.to_dict())


@dataclass
class RunningExperiment:
    """A running experiment as this process serves it."""

    experiment: Experiment
    assigner: Assigner
    pipelines: list[Pipeline]

    def variant_of(self, user_id: int) -> tuple[Variant, Pipeline]:
        i = self.assigner.index(user_id)
        return self.experiment.variants[i], self.pipelines[i]


class ExperimentLayer:
    """Chooses each user's variant while an experiment runs, and logs what it served.

    Args:
        service: The service of the live model (control's ``champion``).
        store: The experiments' tables.
        registry: Published versions, for ``model`` and ``version`` variants.
        log: Where exposures go; None: not recorded (``AB_EXPOSURE_LOG=0``).
        train: Trains and publishes a model type, for a ``model`` variant
            with no published version.
        window: The attribution window of the report.
        guardrails: The report's margins against control.
    """

    def __init__(
        self,
        service: RecommendationService,
        store: ExperimentStore,
        registry: ModelRegistry,
        log: ExposureLog | None,
        train: Callable[[str], ArtifactMetadata],
        window: timedelta = timedelta(hours=24),
        guardrails: Guardrails | None = None,
    ):
        self.service = service
        self.store = store
        self.registry = registry
        self.log = log
        self.train = train
        self.window = window
        self.guardrails = guardrails or Guardrails()
        self.running: RunningExperiment | None = None
        self._refresh_lock = threading.Lock()

    # -- the request path --------------------------------------------------------

    def recommend(self, request: RecommendRequest) -> RecommendationAnswer | ExperimentAnswer:
        """Answer as ``RecommendationService.recommend``, through the user's variant if one runs."""
        running = self.running
        if running is None:
            return self.service.recommend(request)
        user_id = request.user_id
        variant, pipeline = running.variant_of(user_id)
        recommendation_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            answer = self.service.recommend(request, pipeline)
        except Exception:
            self._record(running, variant, user_id, recommendation_id, None, started)
            raise
        self._record(running, variant, user_id, recommendation_id, answer, started)
        return ExperimentAnswer(answer, running.experiment.name, variant.name, recommendation_id)

    def _record(
        self,
        running: RunningExperiment,
        variant: Variant,
        user_id: int,
        recommendation_id: str,
        answer: RecommendationAnswer | None,
        started: float,
    ) -> None:
        if self.log is None:
            return
        self.log.record(
            {
                "recommendation_id": recommendation_id,
                "experiment": running.experiment.name,
                "variant": variant.name,
                "user_id": user_id,
                "product_ids": " ".join(str(p.product_id) for p in answer.recommendations)
                if answer is not None
                else "",
                "model_version": answer.model_version if answer is not None else None,
                "strategy": answer.strategy if answer is not None else None,
                "latency_ms": (time.perf_counter() - started) * 1000,
                "failed": answer is None or answer.degraded is not None,
                "served_at": utc_now(),
            }
        )

    def link_events(self, links: Sequence[tuple[str, int, int, bool, datetime | None]]) -> None:
        """Queue events posted with a recommendation id: (id, user, product, purchased, when)."""
        if self.log is None:
            return
        now = utc_now()
        for recommendation_id, user_id, product_id, purchased, when in links:
            self.log.record_event(
                {
                    "recommendation_id": recommendation_id,
                    "user_id": user_id,
                    "product_id": product_id,
                    "purchased": purchased,
                    "created_at": when or now,
                }
            )

    # -- managing experiments ----------------------------------------------------

    def create(self, spec: Any) -> Experiment:
        """Validate and store a new experiment in draft.

        Raises:
            InvalidExperimentError: The definition is malformed.
            ExperimentExistsError: The name is taken.
        """
        experiment = experiment_from_spec(spec)
        row = experiment.to_dict()
        row.update(
            variants=[v.to_dict() for v in experiment.variants],
            created_at=experiment.created_at,
            started_at=None,
            stopped_at=None,
        )
        row.pop("unit")
        self.store.create(row)
        return experiment

    def get(self, name: str) -> Experiment:
        """Return one experiment.

        Raises:
            NoSuchExperimentError: None has that name.
        """
        row = self.store.get(name)
        if row is None:
            raise NoSuchExperimentError(f"no experiment named {name!r}")
        return Experiment.from_row(row)

    def list(self) -> list[Experiment]:
        """Return every experiment, newest first."""
        return [Experiment.from_row(row) for row in self.store.list()]

    def start(self, name: str) -> Experiment:
        """Pin each variant's model version, start the experiment and serve it here now.

        A ``model`` variant serves the newest published version of its type;
        when there is none, one is trained now (this call then takes as long
        as a training run).

        Raises:
            NoSuchExperimentError, ExperimentStateError, ArtifactError,
            NoTrainingDataError.
        """
        experiment = self.get(name)
        pinned = []
        for variant in experiment.variants:
            if variant.strategy == MODEL and variant.model is not None:
                meta = self._newest(variant.model) or self.train(variant.model)
                variant = dataclasses.replace(variant, version=meta.version)
            elif variant.strategy == VERSION and variant.version is not None:
                self.registry.read_metadata(variant.version)  # raises when it is not there
            pinned.append(variant.to_dict())
        try:
            self.store.start(name, pinned, utc_now())
        except LookupError:
            raise NoSuchExperimentError(f"no experiment named {name!r}") from None
        self.refresh()
        return self.get(name)

    def stop(self, name: str) -> Experiment:
        """Stop a running experiment; its users get the live model again."""
        try:
            self.store.stop(name, utc_now())
        except LookupError:
            raise NoSuchExperimentError(f"no experiment named {name!r}") from None
        self.refresh()
        return self.get(name)

    def report(self, name: str) -> dict[str, Any]:
        """Return an experiment's report (what this process queued is written first).

        Raises:
            NoSuchExperimentError: None has that name.
        """
        experiment = self.get(name)
        if self.log is not None:
            self.log.flush()
        return experiment_report(
            experiment,
            self.store.exposures_frame(name),
            self.store.linked_events_frame(name),
            self.store.exposed_users_purchases(name),
            self.window,
            self.guardrails,
        )

    def _newest(self, model_type: str) -> ArtifactMetadata | None:
        for version in self.registry.versions():
            meta = self.registry.read_metadata(version)
            if meta.model_type == model_type and meta.selected_by is None:
                return meta
        return None

    def refresh(self) -> None:
        """Serve the experiment the database says is running (or none).

        Raises:
            One of ``STORE_OUTAGES`` when the database is unavailable (the
            current state is kept); ``ArtifactError`` when a pinned version
            cannot be loaded (no experiment is served then).
        """
        with self._refresh_lock:
            row = self.store.running()
            current = self.running
            if row is None:
                self.running = None
                return
            experiment = Experiment.from_row(row)
            if (
                current is not None
                and current.experiment.name == experiment.name
                and current.experiment.started_at == experiment.started_at
            ):
                return
            try:
                pipelines = [self._pipeline_for(v) for v in experiment.variants]
            except Exception:
                self.running = None
                raise
            self.running = RunningExperiment(
                experiment,
                Assigner(experiment.name, [v.weight for v in experiment.variants]),
                pipelines,
            )
            logger.info("serving experiment %s", experiment.name)

    def _pipeline_for(self, variant: Variant) -> Pipeline:
        if variant.strategy == CHAMPION:
            return self.service.pipeline
        if variant.strategy == POPULAR:
            return self.service.popular_pipeline
        assert variant.version is not None, "model and version variants are pinned at start"
        artifact: LoadedArtifact = self.registry.load(variant.version)
        return self.service.pinned_pipeline(artifact)


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guardrails:
    """How much worse than control a variant may be on latency and errors."""

    latency_margin: float = 0.2
    error_margin: float = 0.01


LINKED_EVENT_COLUMNS = (
    "recommendation_id",
    "user_id",
    "product_id",
    "purchased",
    "created_at",
    "price",
)


def attribute(exposures: pd.DataFrame, events: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Return the linked events that count: a listed product, the same user, inside the window.

    Args:
        exposures: ``recommendation_id, variant, user_id, product_ids, served_at``
            (product ids space-separated, in the order shown).
        events: ``recommendation_id, user_id, product_id, purchased, created_at, price``.
        window: How long after the list was served an event still counts.

    Returns:
        The counted events with the exposure's ``variant`` added.
    """
    columns = [*LINKED_EVENT_COLUMNS, "variant"]
    if events.empty or exposures.empty:
        return pd.DataFrame(columns=columns)
    shown = exposures[["recommendation_id", "variant", "user_id", "product_ids", "served_at"]]
    joined = events.merge(shown, on="recommendation_id", suffixes=("", "_shown"))
    listed = [
        str(product) in ids.split()
        for product, ids in zip(joined["product_id"], joined["product_ids"], strict=True)
    ]
    delay = pd.to_datetime(joined["created_at"]) - pd.to_datetime(joined["served_at"])
    counted = (
        pd.Series(listed, index=joined.index, dtype=bool)
        & (joined["user_id"] == joined["user_id_shown"])
        & (delay >= pd.Timedelta(0))
        & (delay <= window)
    )
    return joined.loc[counted, columns].reset_index(drop=True)


def experiment_report(
    experiment: Experiment,
    exposures: pd.DataFrame,
    linked_events: pd.DataFrame,
    user_purchases: pd.DataFrame,
    window: timedelta,
    guardrails: Guardrails | None = None,
) -> dict[str, Any]:
    """Return the report of an experiment from what it served and what followed.

    Args:
        experiment: The experiment.
        exposures: ``ExperimentStore.exposures_frame``.
        linked_events: ``ExperimentStore.linked_events_frame``.
        user_purchases: ``ExperimentStore.exposed_users_purchases``.
        window: The attribution window.
        guardrails: Latency and error margins against control.
    """
    guardrails = guardrails or Guardrails()
    counted = attribute(exposures, linked_events, window)
    first_exposure = exposures.groupby("user_id")["served_at"].min() if len(exposures) else None
    user_variant = exposures.groupby("user_id")["variant"].first() if len(exposures) else None
    rows: list[dict[str, Any]] = []
    for variant in experiment.variants:
        shown = exposures[exposures["variant"] == variant.name]
        mine = counted[counted["variant"] == variant.name]
        users = int(shown["user_id"].nunique())
        served = len(shown)
        ok = shown[~shown["failed"].astype(bool)]
        purchases = mine[mine["purchased"].astype(bool)]
        buyers = int(purchases["user_id"].nunique())
        clicked_lists = int(mine["recommendation_id"].nunique())
        prices = purchases["price"].dropna()
        revenue = float(prices.sum()) if len(prices) else None
        per_user = (
            purchases.groupby("user_id")["price"]
            .sum()
            .reindex(shown["user_id"].unique(), fill_value=0.0)
        )
        level = _user_level(variant.name, user_variant, user_purchases, first_exposure)
        rows.append(
            {
                "variant": variant.name,
                "strategy": variant.strategy,
                **({"model": variant.model} if variant.model else {}),
                **({"version": variant.version} if variant.version else {}),
                "weight": variant.weight,
                "users": users,
                "exposures": served,
                "clicks": len(mine),
                "lists_clicked": clicked_lists,
                "click_through": abstats.wilson_interval(clicked_lists, served).to_dict(),
                "purchases": len(purchases),
                "buyers": buyers,
                "conversion": abstats.wilson_interval(buyers, users).to_dict(),
                "revenue": round(revenue, 2) if revenue is not None else None,
                "revenue_per_user": _finite(abstats.mean_interval(per_user.tolist()).to_dict())
                if revenue is not None
                else None,
                "latency_ms": {
                    "p50": _quantile(ok["latency_ms"], 0.5),
                    "p95": _quantile(ok["latency_ms"], 0.95),
                },
                "error_rate": round(float(shown["failed"].astype(bool).mean()), 6)
                if served
                else 0.0,
                "user_level": level,
            }
        )
    _compare(experiment, rows)
    srm = abstats.sample_ratio_check([r["users"] for r in rows], [r["weight"] for r in rows])
    failures = _guardrail_failures(rows, guardrails)
    status, verdict = _verdict(experiment, rows, srm, failures)
    return {
        "experiment": experiment.to_dict(),
        "attribution_window_hours": round(window.total_seconds() / 3600, 4),
        "variants": rows,
        "sample_ratio": {
            "chi_square": round(srm.chi_square, 4),
            "p_value": round(srm.p_value, 6),
            "mismatch": srm.mismatch,
            "expected_users": [round(e, 1) for e in srm.expected],
        },
        "guardrails": {
            "latency_margin": guardrails.latency_margin,
            "error_margin": guardrails.error_margin,
            "failures": failures,
        },
        "status": status,
        "verdict": verdict,
    }


def _user_level(
    name: str,
    user_variant: pd.Series | None,
    purchases: pd.DataFrame,
    first_exposure: pd.Series | None,
) -> dict[str, Any]:
    """Purchases of the variant's users after their first exposure, linked to a list or not."""
    if user_variant is None or first_exposure is None:
        return {"users": 0, "buyers": 0, "purchases": 0, "conversion": None, "revenue": None}
    users = user_variant[user_variant == name].index
    mine = purchases[purchases["user_id"].isin(users)]
    buyers = int(mine["user_id"].nunique())
    prices = mine["price"].dropna()
    return {
        "users": len(users),
        "buyers": buyers,
        "purchases": len(mine),
        "conversion": abstats.wilson_interval(buyers, len(users)).to_dict(),
        "revenue": round(float(prices.sum()), 2) if len(prices) else None,
    }


def _primary(experiment: Experiment, row: Mapping[str, Any]) -> tuple[int, int]:
    if experiment.metric == CONVERSION:
        return row["buyers"], row["users"]
    return row["lists_clicked"], row["exposures"]


def _compare(experiment: Experiment, rows: list[dict[str, Any]]) -> None:
    control = rows[0]
    c_success, c_trials = _primary(experiment, control)
    control["vs_control"] = None
    for row in rows[1:]:
        success, trials = _primary(experiment, row)
        if trials == 0 or c_trials == 0:
            row["vs_control"] = None
            continue
        test = abstats.two_proportion_ztest(success, trials, c_success, c_trials)
        row["vs_control"] = {
            "metric": experiment.metric,
            "difference": test.interval.to_dict(),
            "relative": round(test.difference / (c_success / c_trials), 6) if c_success else None,
            "z": round(test.z, 4),
            "p_value": round(test.p_value, 6),
        }


def _guardrail_failures(rows: list[dict[str, Any]], guardrails: Guardrails) -> list[str]:
    control = rows[0]
    failures = []
    for row in rows[1:]:
        mine, theirs = row["latency_ms"]["p95"], control["latency_ms"]["p95"]
        if (
            mine is not None
            and theirs is not None
            and mine > theirs * (1 + guardrails.latency_margin)
            and mine - theirs > LATENCY_TOLERANCE_MS
        ):
            failures.append(
                f"{row['variant']}: p95 latency {mine:.1f} ms against control's {theirs:.1f} ms "
                f"(more than {guardrails.latency_margin:.0%} worse)"
            )
        if row["error_rate"] > control["error_rate"] + guardrails.error_margin:
            failures.append(
                f"{row['variant']}: error rate {row['error_rate']:.2%} against control's "
                f"{control['error_rate']:.2%}"
            )
    return failures


def _verdict(
    experiment: Experiment,
    rows: list[dict[str, Any]],
    srm: abstats.SampleRatioCheck,
    failures: list[str],
) -> tuple[str, str]:
    unit = "users" if experiment.metric == CONVERSION else "served lists"
    if srm.mismatch:
        split = ", ".join(f"{r['variant']} {r['users']}" for r in rows)
        return "sample_ratio_mismatch", (
            f"Do not trust this result: the users per variant ({split}) do not match the "
            f"weights (chi-square p = {srm.p_value:.2g}). Something assigns or logs users "
            "unevenly; fix it and restart the experiment."
        )
    smallest = min(_primary(experiment, r)[1] for r in rows)
    if smallest < experiment.planned_per_variant:
        return "collecting", (
            f"No verdict yet: the smallest variant has {smallest} of the "
            f"{experiment.planned_per_variant} {unit} planned per variant. Naming a winner "
            "before the planned sample size would inflate false positives; keep it running."
        )
    if failures:
        return "guardrail_failed", "A guardrail failed: " + "; ".join(failures) + "."
    # Several variants against one control: Bonferroni keeps the overall false-positive rate.
    alpha = abstats.ALPHA / (len(rows) - 1)
    significant = [
        r for r in rows[1:] if r["vs_control"] is not None and r["vs_control"]["p_value"] < alpha
    ]
    better = [r for r in significant if r["vs_control"]["difference"]["estimate"] > 0]
    metric = experiment.metric.replace("_", "-")
    if better:
        best = max(better, key=lambda r: r["vs_control"]["difference"]["estimate"])
        d = best["vs_control"]["difference"]
        return "winner", (
            f"{best['variant']} beats {rows[0]['variant']} on {metric}: "
            f"{d['estimate']:+.2%} (95% CI {d['low']:+.2%} to {d['high']:+.2%}), "
            f"{p_text(best['vs_control']['p_value'])}, at the planned sample size."
        )
    if significant:
        names = ", ".join(r["variant"] for r in significant)
        return "control_wins", (
            f"{rows[0]['variant']} (control) is better: {names} did significantly worse on "
            f"{metric}. Keep control."
        )
    return "no_difference", (
        f"No significant difference on {metric} at the planned sample size (alpha "
        f"{alpha:.3g}). Keep control, or plan a larger test for a smaller effect."
    )


def _quantile(values: pd.Series, q: float) -> float | None:
    return round(float(values.quantile(q)), 3) if len(values) else None


def _finite(interval: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if np.isfinite(v) else None) for k, v in interval.items()}


def report_text(report: Mapping[str, Any]) -> str:
    """Return a report as the plain text the command line prints."""
    experiment = report["experiment"]
    metric = experiment["metric"]
    lines = [
        f"Experiment {experiment['name']} ({experiment['status']}): primary metric {metric}, "
        f"planned {experiment['planned_per_variant']} {experiment['unit']} per variant "
        f"(MDE {experiment['mde']:+.2%} on {experiment['baseline_rate']:.2%})",
        "",
        f"{'variant':<12}{'strategy':<16}{'users':>7}{'lists':>8}{'clicks':>8}"
        f"{'CTR [95% CI]':>24}{'buyers':>8}{'conversion [95% CI]':>26}{'revenue':>10}"
        f"{'p50 ms':>8}{'p95 ms':>8}",
    ]
    for row in report["variants"]:
        strategy = row.get("version") or row.get("model") or row["strategy"]
        revenue = "-" if row["revenue"] is None else f"{row['revenue']:.2f}"
        latency = row["latency_ms"]
        lines.append(
            f"{row['variant']:<12}{strategy[:15]:<16}{row['users']:>7}{row['exposures']:>8}"
            f"{row['clicks']:>8}{_rate_text(row['click_through']):>24}{row['buyers']:>8}"
            f"{_rate_text(row['conversion']):>26}{revenue:>10}"
            f"{_ms(latency['p50']):>8}{_ms(latency['p95']):>8}"
        )
    lines.append("")
    for row in report["variants"][1:]:
        versus = row["vs_control"]
        if versus is None:
            continue
        d = versus["difference"]
        lines.append(
            f"{row['variant']} vs {report['variants'][0]['variant']} on {metric}: "
            f"{d['estimate']:+.2%} (95% CI {d['low']:+.2%} to {d['high']:+.2%}), "
            f"z = {versus['z']:.2f}, {p_text(versus['p_value'])}"
        )
    lines.append("User level (every purchase after a user's first exposure, linked or not):")
    for row in report["variants"]:
        level = row["user_level"]
        rate = "-" if level["conversion"] is None else _rate_text(level["conversion"])
        lines.append(
            f"  {row['variant']:<12}{level['buyers']:>6} of {level['users']:<6} users bought: "
            f"{rate}, {level['purchases']} purchases"
        )
    srm = report["sample_ratio"]
    lines.append(
        f"Sample ratio: chi-square {srm['chi_square']:.2f}, p = {srm['p_value']:.3g} "
        + ("-- MISMATCH" if srm["mismatch"] else "(as the weights say)")
    )
    failures = report["guardrails"]["failures"]
    lines.append("Guardrails: " + ("; ".join(failures) if failures else "all within margins"))
    lines.append(f"Verdict: {report['verdict']}")
    return "\n".join(lines)


def p_text(p_value: float) -> str:
    """Return a p-value as people read it: "p = 0.012", or "p < 0.0001" for tiny ones."""
    return "p < 0.0001" if p_value < 1e-4 else f"p = {p_value:.2g}"


def _rate_text(interval: Mapping[str, float]) -> str:
    return f"{interval['estimate']:.2%} [{interval['low']:.1%}, {interval['high']:.1%}]"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
