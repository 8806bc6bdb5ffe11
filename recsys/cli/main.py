"""Command line of ``recommendation_system.py``: rmse (default), generate, eda, evaluate, tune,
simulate-ab, train."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from recsys.cli.ab_simulation import add_experiment_commands
from recsys.cli.arguments import HelpFormatter, add_command, int_at_least
from recsys.cli.evaluation import add_evaluation_commands
from recsys.cli.training import add_training_command
from recsys.data.catalog import CATALOG_FILE, catalog_path_for, load_catalog, write_catalog
from recsys.data.eda import eda_report, load_eda_log
from recsys.data.interactions import write_interactions
from recsys.data.log_files import is_parquet, write_log
from recsys.data.simulate import (
    DEFAULT_PRODUCTS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    SimulationConfig,
    simulate_shop,
)
from recsys.errors import RecsysError
from recsys.evaluation.default_pipeline import PipelineResult, run_pipeline

# ``--out -`` writes the log to standard output.
STDOUT = "-"
# Smaller shops simulate in well under a second: no progress bar.
PROGRESS_MIN_USERS = 5_000


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="recommendation_system.py",
        description="Simulated shop recommender. With no command, print the SVD RMSE block.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    rmse = add_command(
        commands,
        "rmse",
        "print SVD, blend and baseline RMSE (the default)",
        "Print RMSE and MAE of SVD, of the blend of rating models and of a global-mean "
        "baseline on the simulated shop, measured on evaluate's holdout split.",
    )
    rmse.set_defaults(handler=cmd_rmse)

    generate = add_command(
        commands,
        "generate",
        "simulate a shop and write its interaction log and catalog",
        "Simulate a shop and write its click log (user_id,product_clicked,purchased) and "
        "its catalog (product_id,name,category,price, as NAME.products.csv beside NAME.csv), "
        "so that eda and the service name the products. Existing files are kept unless "
        "--force is given.",
    )
    generate.add_argument(
        "--users", type=int_at_least(1), default=DEFAULT_USERS, metavar="N", help="simulated users"
    )
    generate.add_argument(
        "--products",
        type=int_at_least(1),
        default=DEFAULT_PRODUCTS,
        metavar="N",
        help="products in the catalog",
    )
    generate.add_argument(
        "--seed",
        type=int_at_least(0),
        default=DEFAULT_SEED,
        help="seed of every random draw; the default with the default sizes reproduces the "
        "bundled interactions.csv and products.csv",
    )
    generate.add_argument(
        "--events",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="simulate exactly N clicks with the vectorised large-shop simulator (millions "
        "of events in seconds; the same taste model, another random stream)",
    )
    generate.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="where to write the log: a CSV file, a Parquet file (.parquet), "
        "or - for standard output (required)",
    )
    generate.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the catalog (default: NAME.products.csv beside --out NAME.csv; "
        "with --out -, no catalog unless this is given)",
    )
    generate.add_argument(
        "--force",
        action="store_true",
        help="overwrite the log or catalog if they exist (default: refuse)",
    )
    generate.set_defaults(handler=cmd_generate)

    eda = add_command(
        commands,
        "eda",
        "print an exploratory report of a log",
        "Print conversion, the most-clicked products, clicks per user and category tastes "
        f"of an interaction log, or with --out write them as charts, report.html and "
        f"summary.json. Products are named by the log's catalog (NAME.products.csv, else "
        f"{CATALOG_FILE}, beside it, "
        "or --catalog); without one they are shown by id. MovieLens ratings are read as "
        "interactions (one click per rating, a rating of 4 or more as a purchase), named "
        "by movies.csv beside them.",
    )
    eda.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="PATH",
        help="interactions CSV or MovieLens ratings (default: the simulated shop's log)",
    )
    eda.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"catalog CSV (default: NAME.products.csv, else {CATALOG_FILE}, beside --data; "
        "the simulated shop's catalog without --data)",
    )
    eda.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the report there instead of printing it: one PNG per chart, "
        "report.html and summary.json (default: print the text report)",
    )
    eda.set_defaults(handler=cmd_eda)

    add_evaluation_commands(commands)
    add_experiment_commands(commands)
    add_training_command(commands)
    return parser


def cmd_rmse(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    """Print the pipeline's RMSE block."""
    print(pipeline().evaluation.report())
    return 0


def cmd_generate(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    """Simulate a shop and write its log and catalog, refusing to overwrite without --force."""
    to_stdout = args.out == STDOUT
    out = None if to_stdout else Path(args.out)
    catalog_path = args.catalog
    if catalog_path is None and out is not None:
        catalog_path = catalog_path_for(out)
    targets = [path for path in (out, catalog_path) if path is not None]
    if len(targets) == 2 and targets[0].resolve() == targets[1].resolve():
        return _fail(f"--out and --catalog name the same file {out}")
    # Check every target first, so a refusal leaves nothing half written.
    for target in targets:
        if target.exists() and not args.force:
            return _fail(f"{target} exists; pass --force to overwrite it")
        if not target.parent.is_dir():
            return _fail(f"cannot write {target}: no folder {target.parent}")

    if out is None and args.events is not None:
        return _fail("--events writes a file: give --out PATH.parquet or PATH.csv")
    config = SimulationConfig(users=args.users, products=args.products, seed=args.seed)
    progress = args.users >= PROGRESS_MIN_USERS
    if args.events is None:
        shop = simulate_shop(config, progress=progress)
        log, catalog = shop.interactions, shop.catalog
    else:
        from recsys.data.simulate_large import simulate_large

        large = simulate_large(config, args.events, progress=progress)
        log, catalog = large.interactions, large.catalog
    try:
        if out is None:
            write_interactions(log, sys.stdout)
        elif is_parquet(out):
            write_log(log, out)
        else:
            write_interactions(log, out)
        if catalog_path is not None:
            write_catalog(catalog, catalog_path)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or 'the output'}: {exc.strerror or exc}")
    written = f"wrote {len(log)} interactions of {args.users} users to "
    written += "standard output" if out is None else str(out)
    if catalog_path is not None:
        written += f" and the catalog of {args.products} products to {catalog_path}"
    # With the log on standard output, the summary must not end up in it.
    print(written, file=sys.stderr if to_stdout else sys.stdout)
    return 0


def cmd_eda(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    """Print the EDA report of a log, or write it as charts with --out."""
    note = None
    if args.data is None:
        interactions = pipeline().shop.interactions
        catalog = load_catalog(args.catalog) if args.catalog else pipeline().shop.catalog
    else:
        interactions, catalog, note = load_eda_log(args.data, args.catalog)
    if args.out is None:
        print(eda_report(interactions, catalog))
        return 0
    # matplotlib loads only when charts are drawn.
    from recsys.data.charts import REPORT_FILE, SUMMARY_FILE, chart_names, write_eda_report

    if args.out.exists() and not args.out.is_dir():
        return _fail(f"--out {args.out} is a file, not a folder")
    source = str(args.data) if args.data else "the simulated shop"
    try:
        summary = write_eda_report(args.out, interactions, catalog, source, note, progress=True)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}")
    print(
        f"wrote {len(chart_names(catalog))} charts, {REPORT_FILE} and {SUMMARY_FILE} to "
        f"{args.out} ({summary['interactions']} interactions of {summary['users']} users)"
    )
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(
    argv: Sequence[str] | None = None, pipeline: Callable[[], PipelineResult] = run_pipeline
) -> int:
    """Run one command and return its exit status.

    Args:
        argv: Arguments after the program name (default: ``sys.argv[1:]``).
        pipeline: Returns the default pipeline's result (already built when
            called from ``recommendation_system.py``).

    Returns:
        0 on success, 2 for a usage or data error (the message is on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", cmd_rmse)
    try:
        return handler(args, pipeline)
    except RecsysError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader left (`... | head`): stop quietly, and keep Python's final
        # flush of stdout from failing again (the recipe of the signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
