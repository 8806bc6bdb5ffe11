"""The ``flask`` commands of the data's lifecycle: delete and export a user, prune, batch lists."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click
from flask.cli import with_appcontext

from recsys.config.values import MAX_RETENTION_DAYS
from recsys.data.files import whole_file
from recsys.data.interactions import MAX_ID
from recsys.runtime import ExportRefusedError, export_recommendations, read_user_ids
from recsys.web.commands import reported, runtime_of_command

USER_ID = click.IntRange(1, MAX_ID)


def commands() -> list[click.Command]:
    """Return the commands to register on the app's CLI group."""
    return [delete_user_command, export_user_command, prune_command, export_lists_command]


@click.command("delete-user")
@with_appcontext
@click.argument("user_id", type=USER_ID)
def delete_user_command(user_id: int):
    """Delete every stored fact about USER_ID (events, exposures, user row); keep an audit record.

    Servers sharing the store and Redis answer the user as unknown from now on.
    """
    who = f"cli:{getpass.getuser()}"
    with reported():
        record = runtime_of_command().delete_user(user_id, who)
    if record is None:
        raise click.ClickException(f"user_id {user_id} has no stored data")
    rows = ", ".join(f"{count} {table}" for table, count in record.rows.items())
    click.echo(f"deleted user {user_id}: {rows} (audit record kept: who, when, how many rows)")


@click.command("export-user")
@with_appcontext
@click.argument("user_id", type=USER_ID)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the JSON to this file (default: standard output)",
)
def export_user_command(user_id: int, out: Path | None):
    """Print every stored fact about USER_ID as JSON: their row, events and exposures."""
    with reported():
        found = runtime_of_command().store.export_user(user_id)
    if found is None:
        raise click.ClickException(f"user_id {user_id} has no stored data")
    text = json.dumps(found, indent=2)
    if out is None:
        click.echo(text)
    else:
        with reported(), whole_file(out) as partial:
            partial.write_text(text + "\n", encoding="utf-8")
        click.echo(f"exported user {user_id} to {out}")


@click.command("prune-events")
@with_appcontext
@click.option(
    "--days",
    type=click.IntRange(1, MAX_RETENTION_DAYS),
    default=None,
    help="keep this many days of events (default: RECSYS_EVENT_RETENTION_DAYS)",
)
def prune_command(days: int | None):
    """Delete the events older than the retention, and the A/B exposures and linked events.

    Ingestion waits a moment at most: each transaction deletes one range of ids.
    """
    runtime = runtime_of_command()
    before = runtime.retention_cutoff(days)
    if before is None:
        raise click.UsageError(
            "event retention is off: set RECSYS_EVENT_RETENTION_DAYS or pass --days"
        )
    from tqdm import tqdm  # only this command shows progress

    with reported(), tqdm(unit="ids", desc="pruning") as bar:
        deleted, exposed = runtime.prune_events(before, on_chunk=lambda ids, _: bar.update(ids))
    click.echo(f"deleted {deleted} events recorded before {before:%Y-%m-%dT%H:%M:%S}Z")
    click.echo(
        f"deleted {exposed.exposures} A/B exposures served before it"
        f" and {exposed.linked_events} events linked to exposures"
    )


@click.command("export-recommendations")
@with_appcontext
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the file: FILE.parquet or FILE.csv (user_id, rank, product_id, score, ...)",
)
@click.option(
    "--n", type=click.IntRange(1, 100), default=20, show_default=True, help="products per user"
)
@click.option(
    "--users",
    "users_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="only these users: a file of ids, one a line (default: every user of the store)",
)
@click.option("--force", is_flag=True, help="replace --out if it exists")
def export_lists_command(out: Path, n: int, users_file: Path | None, force: bool):
    """Write every user's list from the live model, the lists GET /recommend gives.

    The file is written under a temporary name and renamed once complete.
    """
    runtime = runtime_of_command()
    with reported(" (nothing was exported)"):
        users = read_user_ids(users_file) if users_file is not None else None
        if not runtime.load_live_model():
            raise click.ClickException(
                "no model is published yet: run `flask --app app init` or `train` first"
            )
        runtime.service.refresh_erased()
        try:
            report = export_recommendations(
                runtime.service, out, n, users, force=force, progress=True
            )
        except ExportRefusedError as exc:
            raise click.UsageError(str(exc)) from None
    click.echo(
        f"exported {report.rows} rows for {report.users} users to {out} with model "
        f"{report.model_version} ({report.users_per_minute:,.0f} users a minute, "
        f"{report.users_per_cpu_minute:,.0f} a CPU minute)"
    )
