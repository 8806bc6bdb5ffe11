"""Command line of ``recommendation_system.py``: rmse (default), generate, eda, evaluate, tune."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from recsys.cli.evaluation import add_evaluation_commands, int_at_least
from recsys.data.eda import eda_report
from recsys.data.interactions import load_interactions, write_interactions
from recsys.data.simulate import (
    DEFAULT_PRODUCTS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    SimulationConfig,
    default_catalog,
    simulate_shop,
)
from recsys.errors import RecsysError
from recsys.evaluation.pipeline import PipelineResult, run_pipeline


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="recommendation_system.py",
        description="Simulated shop recommender. With no command, print the SVD RMSE block.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    rmse = commands.add_parser("rmse", help="print SVD and baseline RMSE (the default)")
    rmse.set_defaults(handler=cmd_rmse)

    generate = commands.add_parser("generate", help="simulate an interaction log and write it")
    generate.add_argument("--users", type=int_at_least(1), default=DEFAULT_USERS)
    generate.add_argument("--products", type=int_at_least(1), default=DEFAULT_PRODUCTS)
    generate.add_argument("--seed", type=int_at_least(0), default=DEFAULT_SEED)
    generate.add_argument("--out", type=Path, default=Path("interactions.csv"))
    generate.set_defaults(handler=cmd_generate)

    eda = commands.add_parser("eda", help="print an exploratory report of a log")
    eda.add_argument(
        "--data", type=Path, default=None, help="interactions CSV (default: the simulated log)"
    )
    eda.set_defaults(handler=cmd_eda)

    add_evaluation_commands(commands)
    return parser


def cmd_rmse(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    print(pipeline().evaluation.report())
    return 0


def cmd_generate(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    config = SimulationConfig(users=args.users, products=args.products, seed=args.seed)
    shop = simulate_shop(config)
    write_interactions(shop.interactions, args.out)
    print(f"wrote {len(shop.interactions)} interactions of {args.users} users to {args.out}")
    return 0


def cmd_eda(args: argparse.Namespace, pipeline: Callable[[], PipelineResult]) -> int:
    if args.data is None:
        shop = pipeline().shop
        interactions, catalog = shop.interactions, shop.catalog
    else:
        interactions, catalog = load_interactions(args.data), default_catalog()
    print(eda_report(interactions, catalog))
    return 0


def main(
    argv: Sequence[str] | None = None, pipeline: Callable[[], PipelineResult] = run_pipeline
) -> int:
    """Run one command and return its exit status.

    Args:
        argv: Arguments after the program name (default: ``sys.argv[1:]``).
        pipeline: Returns the default pipeline's result (already built when
            called from ``recommendation_system.py``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", cmd_rmse)
    try:
        return handler(args, pipeline)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
