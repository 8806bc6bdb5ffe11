"""Attach the event store, model artifacts and training to the Flask app.

``init_app`` builds a ``ServingRuntime`` from the app's config, starts it
(migrate, bootstrap, load or train), registers the ingestion and admin
blueprints and the ``flask`` commands ``train``, ``import-interactions`` and
``export-interactions``.

Config keys (``RECSYS_``-prefixed in the environment):
    DATABASE_URL: The event store; else the ``DATABASE_URL`` environment
        variable; else ``recsys.db`` (SQLite) in the instance folder.
    MODEL_DIR: Artifact directory (default ``models`` in the instance folder).
    MODEL_PARAMS_PATH: Hyper-parameters per model, as ``tune --save`` writes
        them (default ``model_params.json`` in the instance folder, if present).
    KEEP_MODEL_VERSIONS: Published versions kept (default 5).
    RETRAIN_EVERY_EVENTS / RETRAIN_EVERY_MINUTES: Automatic retrain (off).
    MODEL_REFRESH_SECONDS: How often a server looks for a version another
        process published (default 10; 0 turns it off).
    INGEST_MAX_BYTES: Largest POST /interactions body.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

from recsys.api import admin, interactions
from recsys.api.errors import error_response
from recsys.data import RatingWeights
from recsys.errors import DataFileError
from recsys.model_params import canonical_model_name, load_model_params
from recsys.runtime import RuntimeSettings, ServingRuntime
from recsys.training import RetrainInProgressError, TrainingSettings

DEFAULTS = {
    "DATABASE_URL": None,
    "MODEL_DIR": None,
    "MODEL_PARAMS_PATH": None,
    "KEEP_MODEL_VERSIONS": 5,
    "RETRAIN_EVERY_EVENTS": None,
    "RETRAIN_EVERY_MINUTES": None,
    "MODEL_REFRESH_SECONDS": 10,
    # 10,000 events of about 80 bytes each, with room for whitespace.
    "INGEST_MAX_BYTES": 4 * 1024 * 1024,
}


def settings_from_config(app: Flask) -> RuntimeSettings:
    """Read the runtime settings from the app's config (see the module docstring)."""
    config = app.config
    instance = Path(app.instance_path)
    url = config.get("DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        instance.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{instance / 'recsys.db'}"
    model_dir = Path(config.get("MODEL_DIR") or instance / "models")
    data_path = config.get("DATA_PATH")
    model = canonical_model_name(config.get("MODEL", "svd"))

    def optional(key: str, kind):
        value = config.get(key)
        return None if value in (None, "", 0) else kind(value)

    return RuntimeSettings(
        database_url=url,
        model_dir=model_dir,
        keep_versions=int(config["KEEP_MODEL_VERSIONS"]),
        training=TrainingSettings(
            model=model,
            model_params=_model_params(config.get("MODEL_PARAMS_PATH"), instance, model),
            weights=RatingWeights(
                float(config.get("CLICK_WEIGHT", 1.0)), float(config.get("PURCHASE_WEIGHT", 2.0))
            ),
        ),
        bootstrap_log=Path(data_path) if data_path else None,
        retrain_every_events=optional("RETRAIN_EVERY_EVENTS", int),
        retrain_every_minutes=optional("RETRAIN_EVERY_MINUTES", float),
        refresh_seconds=float(config["MODEL_REFRESH_SECONDS"] or 0),
    )


def _model_params(configured: str | None, instance: Path, model: str) -> dict:
    """Return the hyper-parameters ``tune --save`` wrote for a model, or none.

    An explicitly configured file must exist; the default one
    (``model_params.json`` in the instance folder) is used only if it does.
    """
    path = Path(configured) if configured else instance / "model_params.json"
    if not path.exists():
        if configured:
            raise DataFileError(path, "MODEL_PARAMS_PATH names a file that does not exist")
        return {}
    return dict(load_model_params(path).get(model, {}))


def init_app(app: Flask) -> ServingRuntime:
    """Start the runtime and register its blueprints and commands.

    Args:
        app: The Flask application, its config already set.

    Returns:
        The started runtime; ``runtime.service`` is the service to serve.
    """
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    runtime = ServingRuntime(settings_from_config(app))
    runtime.start()
    app.extensions["recsys.runtime"] = runtime
    app.register_blueprint(interactions.bp)
    app.register_blueprint(admin.bp)
    app.register_error_handler(sa.exc.OperationalError, _store_unavailable)
    app.cli.add_command(train_command)
    app.cli.add_command(import_command)
    app.cli.add_command(export_command)
    return runtime


def _store_unavailable(exc: sa.exc.OperationalError):
    # The database is down or locked for too long: the caller may retry, so
    # this is a 503 rather than the 500 that marks a bug.
    current_app.logger.warning("event store unavailable: %s", exc.orig or exc)
    response = error_response(
        503, "store_unavailable", "the event store is unavailable; retry shortly"
    )
    response.headers["Retry-After"] = "1"
    return response


def _runtime() -> ServingRuntime:
    return current_app.extensions["recsys.runtime"]


@click.command("train")
@with_appcontext
def train_command():
    """Train a model on the event store and publish it as the newest version."""
    try:
        meta = _runtime().train_exclusively()
    except RetrainInProgressError as exc:
        raise click.ClickException(f"{exc}; try again when it has finished") from None
    click.echo(f"published {meta.version} ({meta.model_type}) trained on "
               f"{meta.training.get('interactions')} interactions")
    for name, value in meta.metrics.items():
        click.echo(f"  {name}: {value}")


@click.command("import-interactions")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_command(file: Path):
    """Load FILE (user_id,product_clicked,purchased[,timestamp]) into the store, all or nothing."""
    try:
        count = _runtime().store.import_interactions(file, progress=True)
    except DataFileError as exc:
        raise click.ClickException(f"{exc} (nothing was imported)") from None
    click.echo(f"imported {count} interactions from {file}")


@click.command("export-interactions")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--with-timestamps", is_flag=True, help="add a fourth column, timestamp (UTC)")
def export_command(file: Path, with_timestamps: bool):
    """Write every interaction in the store to FILE in the interactions.csv schema."""
    count = _runtime().store.export_interactions(file, include_timestamps=with_timestamps)
    click.echo(f"exported {count} interactions to {file}")
