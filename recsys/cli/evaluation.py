"""The ``evaluate`` and ``tune`` subcommands of ``recommendation_system.py``.

``recsys.cli.main`` adds them with ``add_evaluation_commands(commands)``; each
handler takes the parsed arguments and the default pipeline (whose simulated
log is the data when ``--data`` is not given) and returns an exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys.cli.arguments import add_command, int_at_least
from recsys.data.loaders import (
    DEFAULT_RELEVANCE_THRESHOLD,
    FORMATS,
    Dataset,
    load_dataset,
    simulated_dataset,
)
from recsys.evaluation.evaluate import DEFAULT_K, evaluate
from recsys.evaluation.model_params import (
    load_model_params,
    model_factory,
    save_model_params,
)
from recsys.evaluation.report import format_report
from recsys.evaluation.splits import DEFAULT_SPLIT_SEED, PROTOCOLS
from recsys.evaluation.tuning import SEARCH_SPACES, tune
from recsys.models import MODELS, canonical_model_name

DEFAULT_MODELS = "popularity,svd,als"


def add_evaluation_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``tune`` subcommands to a subparsers object."""
    evaluate_parser = add_command(
        commands,
        "evaluate",
        "compare models offline (ranking metrics, RMSE, fit time)",
        "Train each model on the same splits and print one row of metrics per model.",
    )
    _add_data_options(evaluate_parser)
    evaluate_parser.add_argument(
        "--models",
        type=_model_list,
        metavar="LIST",
        default=_model_list(DEFAULT_MODELS),
        help=f"comma-separated model names, or 'all' ({', '.join(MODELS)}); 'popular' and "
        f"'popularity' are the same model (default: {DEFAULT_MODELS})",
    )
    evaluate_parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="holdout", help="how to split train and test"
    )
    evaluate_parser.add_argument(
        "--folds", type=int_at_least(2), default=5, metavar="N", help="folds of --protocol kfold"
    )
    evaluate_parser.add_argument(
        "--leave-last",
        type=int_at_least(1),
        metavar="N",
        default=1,
        help="rows per user held out by --protocol time",
    )
    evaluate_parser.add_argument(
        "--k", type=int_at_least(1), default=DEFAULT_K, help="ranking cut-off"
    )
    evaluate_parser.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="PATH",
        help="JSON hyper-parameters per model, as tune --save writes them "
        "(default: each model's class defaults)",
    )
    evaluate_parser.add_argument(
        "--json", action="store_true", help="print the report as JSON (default: a table)"
    )
    evaluate_parser.set_defaults(handler=cmd_evaluate)

    tune_parser = add_command(
        commands,
        "tune",
        "search a model's hyper-parameters on evaluate's split and metric",
        "Score the model's current defaults and up to --trials - 1 other candidates drawn "
        "(seeded by --seed) from its search space, each fitted and scored exactly as "
        "evaluate --protocol holdout --seed SEED scores a model, with rmse or ndcg@K; print "
        "the best. Ties go to the earlier candidate, so the defaults stay unless something "
        "is strictly better, and tune --save never makes the model worse than its defaults "
        "on that split. The winner is picked on evaluate's test rows, so evaluate's figure "
        "for it is optimistic: evaluate with another --seed for an unbiased check.",
    )
    _add_data_options(tune_parser)
    tune_parser.add_argument(
        "--model", choices=sorted(SEARCH_SPACES), required=True, help="model to tune (required)"
    )
    tune_parser.add_argument(
        "--metric", default=None, help="rmse or ndcg@K (default: rmse for svd, ndcg@10 for als)"
    )
    tune_parser.add_argument(
        "--trials",
        type=int_at_least(1),
        metavar="N",
        default=10,
        help="candidates to score, the model's defaults included",
    )
    tune_parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="PATH",
        help="merge the best parameters into this JSON file, e.g. instance/model_params.json "
        "(default: do not save)",
    )
    tune_parser.add_argument(
        "--json", action="store_true", help="print the result as JSON (default: a summary)"
    )
    tune_parser.set_defaults(handler=cmd_tune)


def cmd_evaluate(args: argparse.Namespace, pipeline: Callable[[], Any]) -> int:
    """Run ``evaluate`` and print its table or JSON."""
    try:
        dataset = _dataset(args, pipeline)
        params = load_model_params(args.params) if args.params else None
        factories = {
            name: model_factory(name, params, dataset.rating_scale) for name in args.models
        }
        report = evaluate(
            factories,
            dataset,
            protocol=args.protocol,
            k=args.k,
            threshold=args.relevance_threshold,
            seed=args.seed,
            folds=args.folds,
            leave_last=args.leave_last,
            progress=True,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_tune(args: argparse.Namespace, pipeline: Callable[[], Any]) -> int:
    """Run ``tune``, print the best parameters and optionally save them."""
    metric = args.metric or ("rmse" if args.model == "svd" else f"ndcg@{DEFAULT_K}")
    try:
        dataset = _dataset(args, pipeline)
        result = tune(
            dataset,
            args.model,
            metric,
            n_trials=args.trials,
            seed=args.seed,
            threshold=args.relevance_threshold,
            progress=True,
        )
        if args.save:
            save_model_params(args.save, result.model, result.best_params)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.report())
    if args.save and not args.json:
        print(f"saved the {result.model} parameters to {args.save}")
    return 0


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="PATH",
        help="ratings or interactions file (default: the simulated shop's log)",
    )
    parser.add_argument("--format", choices=FORMATS, default="auto", help="layout of --data")
    parser.add_argument(
        "--relevance-threshold",
        type=float,
        metavar="RATING",
        default=DEFAULT_RELEVANCE_THRESHOLD,
        help="a held-out item is relevant when its rating is at least this",
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=DEFAULT_SPLIT_SEED,
        help="seed of the holdout and k-fold splits (and of tune's candidate draw)",
    )


def _dataset(args: argparse.Namespace, pipeline: Callable[[], Any]) -> Dataset:
    if args.data is None:
        return simulated_dataset(pipeline().feedback)
    return load_dataset(args.data, args.format)


def _model_list(text: str) -> list[str]:
    if text.strip() == "all":
        return list(MODELS)
    names: list[str] = []
    try:
        for part in text.split(","):
            name = canonical_model_name(part)
            if name not in names:
                names.append(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names
