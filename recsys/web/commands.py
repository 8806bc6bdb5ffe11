"""The ``flask`` commands: init, train, import and export, create-key (and ``data_commands``')."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from recsys.config.api_keys import ROLES, check_rate, new_key
from recsys.config.sections import BUNDLED_LOG
from recsys.data.catalog import load_catalog
from recsys.data.log_files import is_parquet
from recsys.errors import DataFileError, OutputFileError
from recsys.runtime import ServingRuntime
from recsys.store.artifact_files import ModelDirectoryError
from recsys.store.bulk import import_log
from recsys.store.engine import STORE_OUTAGES, describe_outage
from recsys.training import TRAINING_REFUSALS, RetrainInProgressError, describe_gate


def init_app(app: Flask) -> None:
    """Register the commands on the app's CLI group."""
    # Imported here: those commands use this module's helpers.
    from recsys.web import data_commands

    for command in (
        init_command,
        train_command,
        import_command,
        import_catalog_command,
        export_command,
        create_key_command,
        worker_command,
        *data_commands.commands(),
    ):
        app.cli.add_command(command)


def runtime_of_command() -> ServingRuntime:
    # Commands work on the store and artifacts; they never start serving.
    return current_app.extensions["recsys.runtime"]


class StartupError(click.ClickException):
    """A command could not run because of the set-up: one line, exit status 2."""

    exit_code = 2


@contextmanager
def reported(file_problem_suffix: str = "", startup: bool = False):
    """Turn the set-up's failures into one-line command errors.

    Args:
        file_problem_suffix: Said after a bad file's error.
        startup: A bad file is a start-up error too (exit status 2), as an
            unreachable database always is.
    """
    try:
        yield
    except DataFileError as exc:
        error = StartupError if startup else click.ClickException
        raise error(f"{exc}{file_problem_suffix}") from None
    except STORE_OUTAGES as exc:
        raise StartupError(describe_outage(exc)) from None
    except ModelDirectoryError as exc:
        raise StartupError(str(exc)) from None
    except OutputFileError as exc:  # a file the command writes
        raise click.ClickException(f"{exc}{file_problem_suffix}") from None
    except RetrainInProgressError as exc:
        raise click.ClickException(f"{exc}; try again when it has finished") from None


@click.command("init")
@with_appcontext
def init_command():
    """Migrate the store, fill it from DATA_PATH if empty, and train a first model if none.

    Idempotent, and safe when several processes run it at once. An empty
    store (DATA_PATH empty) is ready too: the servers train the first model
    when the first events arrive.
    """
    runtime = runtime_of_command()
    with reported(startup=True):
        report = runtime.init()
    if report.version is None:
        click.echo(
            "ready: no data yet (the event store has no interactions); the first model "
            "is trained when events arrive (POST /interactions)"
        )
        return
    log = runtime.settings.store.data_path
    click.echo(
        f"ready: model {report.version}"
        + (" (trained now)" if report.trained else "")
        + (f", store filled from {log_name(log)}" if report.filled and log else "")
    )


def log_name(log: Path) -> str:
    """Name the log ``init`` filled the store from: the bundled one, or the file's path."""
    return "the bundled log" if log.resolve() == BUNDLED_LOG else str(log)


@click.command("train")
@with_appcontext
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default=None,
    help="what fits the model (default: RECSYS_TRAINING_ENGINE): local, or spark "
    "(PySpark ML ALS; needs requirements-spark.txt and Java)",
)
@click.option(
    "--spark-master",
    default=None,
    metavar="URL",
    help="the Spark master: local[2] (default: RECSYS_SPARK_MASTER), spark://HOST:7077, yarn",
)
@click.option(
    "--force",
    is_flag=True,
    help="publish the new version even if the quality gate finds it worse than the live one",
)
def train_command(engine: str | None, spark_master: str | None, force: bool):
    """Train a model on the event store and publish it if the quality gate passes it.

    Exits with status 1 when the gate rejects it: the live version keeps
    serving, and the new one is kept as rejected with both figures.
    """
    overrides = {k: v for k, v in (("engine", engine), ("spark_master", spark_master)) if v}
    with reported():
        try:
            meta = runtime_of_command().train_exclusively(progress=True, force=force, **overrides)
        except TRAINING_REFUSALS as exc:
            raise click.ClickException(str(exc)) from None
    done = "kept as rejected" if meta.rejected else "published"
    # Either engine records the retention window it read the events in.
    since = meta.training.get("events_since")
    click.echo(
        f"{done} {meta.version} ({meta.model_type}) trained on "
        f"{meta.training.get('interactions')} interactions"
        + (f" recorded since {since} (EVENT_RETENTION_DAYS)" if since else "")
    )
    for name, value in meta.metrics.items():
        click.echo(f"  {name}: {value}")
    if meta.gate:
        click.echo(f"quality gate {describe_gate(meta.gate)}")
    if meta.rejected:
        raise click.ClickException(
            "the quality gate rejected the new version: the live one keeps serving; "
            "`flask --app app train --force` publishes it anyway"
        )


@click.command("import-interactions")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--stream",
    is_flag=True,
    help="read and write in chunks (bounded memory; COPY on PostgreSQL); "
    "always on for Parquet files; clicks and purchases only",
)
@click.option(
    "--append",
    is_flag=True,
    help="import FILE even though the same file (without event_id) was imported before",
)
def import_command(file: Path, stream: bool, append: bool):
    """Load FILE into the store, all or nothing, each event once.

    FILE is CSV (user_id,product_clicked,purchased, then any of
    timestamp,type,value,event_id), or Parquet (.parquet) for logs of
    millions of events. Events whose event_id the store holds are not stored
    again; a file without event_id imported before is refused unless --append.
    """
    runtime = runtime_of_command()
    store = runtime.store
    with reported(" (nothing was imported)"):
        if stream or is_parquet(file):
            count, known = import_log(store.engine, file, progress=True, append=append), 0
        else:
            count, known, _ = store.import_interactions(file, progress=True, append=append)
    # Running servers cached histories and answers the import made stale.
    runtime.service.forget_everything()
    already = f" ({known} already recorded, by event_id)" if known else ""
    click.echo(f"imported {count} interactions from {file}{already}")


@click.command("import-catalog")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_catalog_command(file: Path):
    """Add or update the products of FILE (product_id,name,category,price), all or nothing."""
    with reported(" (nothing was imported)"):
        count = runtime_of_command().store.upsert_products(load_catalog(file))
    click.echo(f"imported {count} products from {file}")


@click.command("export-interactions")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--with-timestamps", is_flag=True, help="add a fourth column, timestamp (UTC)")
@click.option("--force", is_flag=True, help="overwrite FILE if it exists")
def export_command(file: Path, with_timestamps: bool, force: bool):
    """Write every interaction in the store to FILE in the interactions.csv schema."""
    if file.exists() and not force:
        # As `generate`: a log is never overwritten by accident.
        raise click.UsageError(f"{file} exists; pass --force to overwrite it")
    with reported():
        store = runtime_of_command().store
        count = store.export_interactions(file, include_timestamps=with_timestamps)
    click.echo(f"exported {count} interactions to {file}")


@click.command("worker")
@with_appcontext
@click.option("--once", is_flag=True, help="run the queued jobs, then exit (default: keep polling)")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=10,
    show_default=True,
    help="lower this process's CPU priority by this much, so servers on the same "
    "machine keep answering fast while it trains",
)
def worker_command(once: bool, nice: int):
    """Run training jobs queued by servers (TRAINING_MODE=worker), one at a time.

    Stops after the current job on SIGTERM or SIGINT.
    """
    runtime = runtime_of_command()
    worker = runtime.worker()
    if nice:
        os.nice(nice)
    with reported(startup=True):
        runtime.registry.ensure_root()  # every job would fail to publish
        closed = runtime.close_orphaned_jobs()
    if closed:
        click.echo(f"failed {closed} job(s) a dead process had left running")
    if once:
        ran = 0
        with reported():
            while (job := worker.run_once()) is not None:
                click.echo(f"job {job.id}: {job.state.value} {job.version or job.error or ''}")
                ran += 1
        click.echo(f"ran {ran} job(s)")
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    click.echo("training worker started: waiting for queued jobs")
    worker.run_forever()


@click.command("create-key")
@click.option(
    "--role",
    "roles",
    type=click.Choice(ROLES),
    multiple=True,
    required=True,
    help="a role of the key (repeat for several; admin implies read and ingest)",
)
@click.option(
    "--rate",
    default=None,
    help="the key's own rate limit, e.g. '2000 per second' (default: its role's, "
    "RECSYS_RATE_LIMIT or RECSYS_RATE_LIMIT_INGEST)",
)
def create_key_command(roles: tuple[str, ...], rate: str | None):
    """Print a new random API key once, and the RECSYS_API_KEYS entry that configures it.

    The service keeps only the key's SHA-256: store the key now, it cannot be shown again.
    """
    if rate is not None:
        try:
            rate = check_rate(rate)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--rate'") from None
    key, configured = new_key(roles, rate)
    click.echo("New API key, shown only now (the service keeps its SHA-256, never the key):")
    click.echo(f"  {key}")
    click.echo("Append this entry to RECSYS_API_KEYS (comma-separated), then restart:")
    click.echo(f"  {configured.config_entry()}")
