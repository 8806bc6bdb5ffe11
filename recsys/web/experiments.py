"""A/B tests (the admin role): define, start, stop and report experiments, by HTTP or ``flask``.

The endpoints and the ``flask --app app experiment ...`` commands call the
same ``ExperimentLayer`` methods; its errors become the JSON error contract
here (400 for a bad definition, 404 for an unknown name, 409 for a move the
experiment's status does not allow).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import click
from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field

from recsys.experiments import (
    CONVERSION,
    MAX_VARIANTS,
    MAX_WEIGHT,
    MIN_MDE,
    MIN_WEIGHT,
    NAME_CHARS,
    ExperimentExistsError,
    ExperimentLayer,
    ExperimentStateError,
    InvalidExperimentError,
    NoSuchExperimentError,
    report_text,
)
from recsys.store.artifacts import ArtifactError
from recsys.training import NoTrainingDataError, RetrainInProgressError
from recsys.web.auth import requires
from recsys.web.bodies import json_body
from recsys.web.commands import reported
from recsys.web.context import runtime
from recsys.web.errors import ApiError
from recsys.web.openapi import operation
from recsys.web.schemas import TEXT_PATTERN

bp = Blueprint("experiments", __name__, cli_group="experiment")
bp.cli.help = "Create, list, start, stop and report A/B tests, as /experiments does."

_NAME = r"^[A-Za-z0-9._-]{1,64}$"


# -- shapes ------------------------------------------------------------------------------------


class VariantIn(BaseModel):
    """One arm: a share of users and how their lists are made.

    Its name differs from the other variants'; strategy model needs ``model``,
    strategy version needs ``version``, and the others take neither.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    weight: float = Field(
        1.0,
        ge=MIN_WEIGHT,
        le=MAX_WEIGHT,
        allow_inf_nan=False,
        description="the variant's share of users, relative to the other weights",
    )
    strategy: Literal["champion", "popular", "model", "version"] = Field(
        description="champion: the live model; popular: its popularity list; model: the newest "
        "version of `model` (trained at start if none); version: one published version"
    )
    model: str | None = Field(
        None,
        pattern=TEXT_PATTERN,
        max_length=NAME_CHARS,
        description="for strategy model: svd, als, ease, ...",
    )
    version: str | None = Field(
        None, pattern=TEXT_PATTERN, max_length=NAME_CHARS, description="for strategy version"
    )


class ExperimentIn(BaseModel):
    """An experiment to create in draft; the first variant is control."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, max_length=NAME_CHARS)
    metric: Literal["conversion", "click_through"] = Field(
        "conversion",
        description="conversion: share of exposed users with an attributed purchase; "
        "click_through: share of served lists with an attributed click",
    )
    baseline_rate: float = Field(gt=0, lt=1, description="control's expected rate")
    mde: float = Field(
        ge=MIN_MDE,
        lt=1,
        description="smallest absolute lift worth detecting; baseline_rate + mde must be below 1",
    )
    variants: list[VariantIn] = Field(min_length=2, max_length=MAX_VARIANTS)


class ExperimentOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    status: Literal["draft", "running", "stopped"]
    metric: Literal["conversion", "click_through"]
    baseline_rate: float
    mde: float
    planned_per_variant: int = Field(description="units per variant for power 0.8, alpha 0.05")
    variants: list[dict[str, Any]]


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]


class ExperimentReport(BaseModel):
    """Per variant: users, exposures, clicks, purchases, rates with 95% intervals; the verdict."""

    model_config = ConfigDict(extra="allow")

    experiment: ExperimentOut
    variants: list[dict[str, Any]]
    sample_ratio: dict[str, Any]
    guardrails: dict[str, Any]
    status: Literal[
        "sample_ratio_mismatch",
        "collecting",
        "guardrail_failed",
        "winner",
        "control_wins",
        "no_difference",
    ]
    verdict: str


# -- endpoints ---------------------------------------------------------------------------------


@contextmanager
def _as_api_errors() -> Iterator[None]:
    try:
        yield
    except InvalidExperimentError as exc:
        raise ApiError(400, "invalid_experiment", str(exc)) from None
    except NoSuchExperimentError as exc:
        raise ApiError(404, "experiment_not_found", str(exc)) from None
    except ExperimentExistsError as exc:
        raise ApiError(409, "experiment_exists", str(exc)) from None
    except ExperimentStateError as exc:
        raise ApiError(409, "experiment_state", str(exc)) from None
    except (ArtifactError, NoTrainingDataError, RetrainInProgressError) as exc:
        raise ApiError(409, "variant_unavailable", f"a variant cannot be served: {exc}") from None


def _layer() -> ExperimentLayer:
    return runtime().experiments


@bp.post("/experiments")
@operation(
    "Define an A/B test (in draft) and see its planned sample size",
    (201, ExperimentOut),
    body=ExperimentIn,
    errors=[409, 415],
    tags=["experiments"],
)
@requires("admin")
def create_experiment():
    spec = json_body("the experiment")
    with _as_api_errors():
        experiment = _layer().create(spec)
    return jsonify(experiment.to_dict()), 201


@bp.get("/experiments")
@operation("Every A/B test, newest first", (200, ExperimentList), tags=["experiments"])
@requires("admin")
def list_experiments():
    return jsonify({"experiments": [e.to_dict() for e in _layer().list()]})


@bp.get("/experiments/<name>")
@operation("One A/B test", (200, ExperimentOut), errors=[404], tags=["experiments"])
@requires("admin")
def show_experiment(name: str):
    with _as_api_errors():
        return jsonify(_layer().get(name).to_dict())


@bp.post("/experiments/<name>/start")
@operation(
    "Start an A/B test (one runs at a time)",
    (200, ExperimentOut),
    errors=[404, 409, 415],
    tags=["experiments"],
)
@requires("admin")
def start_experiment(name: str):
    with _as_api_errors():
        return jsonify(_layer().start(name).to_dict())


@bp.post("/experiments/<name>/stop")
@operation(
    "Stop a running A/B test", (200, ExperimentOut), errors=[404, 409, 415], tags=["experiments"]
)
@requires("admin")
def stop_experiment(name: str):
    with _as_api_errors():
        return jsonify(_layer().stop(name).to_dict())


@bp.get("/experiments/<name>/report")
@operation(
    "An A/B test's results: rates with intervals, z-tests, SRM, guardrails, verdict",
    (200, ExperimentReport),
    errors=[404],
    tags=["experiments"],
)
@requires("admin")
def experiment_report(name: str):
    with _as_api_errors():
        return jsonify(_layer().report(name))


# -- `flask --app app experiment ...` ------------------------------------------------------------


def _command_layer() -> ExperimentLayer:
    return current_app.extensions["recsys.runtime"].experiments


def _run(action: Callable[[], Any]) -> Any:
    # An unreachable or uninitialised store is one line, as for every other command.
    try:
        with reported(), _as_api_errors():
            return action()
    except ApiError as exc:
        raise click.ClickException(exc.message) from None


def _variant(text: str) -> dict[str, Any]:
    """Parse NAME:WEIGHT:STRATEGY[:MODEL_OR_VERSION]."""
    parts = text.split(":")
    if not 3 <= len(parts) <= 4:
        raise click.BadParameter(f"expected NAME:WEIGHT:STRATEGY[:MODEL_OR_VERSION], got {text!r}")
    name, weight, strategy = parts[:3]
    try:
        variant: dict[str, Any] = {"name": name, "weight": float(weight), "strategy": strategy}
    except ValueError:
        raise click.BadParameter(f"the weight of {text!r} is not a number") from None
    if len(parts) == 4:
        variant["version" if strategy == "version" else "model"] = parts[3]
    return variant


@bp.cli.command("create")
@click.argument("name")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    required=True,
    help="NAME:WEIGHT:STRATEGY[:MODEL_OR_VERSION], control first; e.g. control:1:champion, "
    "pop:1:popular, als:1:model:als",
)
@click.option("--metric", type=click.Choice(["conversion", "click_through"]), default=CONVERSION)
@click.option("--baseline", type=float, required=True, help="control's expected rate")
@click.option("--mde", type=float, required=True, help="smallest absolute lift worth detecting")
def create_command(name: str, variants: tuple[str, ...], metric: str, baseline: float, mde: float):
    """Define an experiment in draft and print its planned sample size."""
    spec = {
        "name": name,
        "metric": metric,
        "baseline_rate": baseline,
        "mde": mde,
        "variants": [_variant(v) for v in variants],
    }
    experiment = _run(lambda: _command_layer().create(spec))
    unit = "users" if metric == CONVERSION else "served lists"
    click.echo(
        f"created {experiment.name} (draft): {experiment.planned_per_variant} {unit} per "
        f"variant to detect {mde:+.2%} on a baseline of {baseline:.2%} (power 0.8, alpha 0.05)"
    )


@bp.cli.command("list")
def list_command():
    """List every experiment."""
    for experiment in _run(lambda: _command_layer().list()):
        variants = ", ".join(f"{v.name}={v.strategy}" for v in experiment.variants)
        click.echo(f"{experiment.name}\t{experiment.status}\t{experiment.metric}\t{variants}")


@bp.cli.command("start")
@click.argument("name")
def start_command(name: str):
    """Start an experiment (a model variant with no published version is trained first)."""
    experiment = _run(lambda: _command_layer().start(name))
    pinned = ", ".join(f"{v.name}={v.version or v.strategy}" for v in experiment.variants)
    click.echo(f"started {experiment.name}: {pinned}")


@bp.cli.command("stop")
@click.argument("name")
def stop_command(name: str):
    """Stop a running experiment."""
    experiment = _run(lambda: _command_layer().stop(name))
    click.echo(f"stopped {experiment.name}")


@bp.cli.command("report")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def report_command(name: str, as_json: bool):
    """Print an experiment's report and verdict."""
    report = _run(lambda: _command_layer().report(name))
    click.echo(json.dumps(report, indent=2) if as_json else report_text(report))
