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
    check_params_target,
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
    _add_protocol_option(evaluate_parser)
    evaluate_parser.add_argument(
        "--repeats",
        type=int_at_least(1),
        metavar="N",
        default=1,
        help="splits to average over, with a 95%% interval when N > 1: seeds SEED..SEED+N-1 "
        "for holdout, N test windows rolled back in time for time and time-global",
    )
    evaluate_parser.add_argument(
        "--test-fraction",
        type=_fraction,
        metavar="F",
        default=None,
        help="holdout: share of each user's rows held out (default 0.2); time-global: share "
        "of the log in each test window (default 0.1)",
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
        "--train-min-rating",
        type=float,
        metavar="RATING",
        default=None,
        help="fit on training rows rated at least this only (default: every training row; "
        "a user's low-rated products stay out of their list either way)",
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
        "search a model's hyper-parameters on validation rows of evaluate's training part",
        "Score the model's current defaults and up to --trials - 1 other candidates drawn "
        "(seeded by --seed) from its search space, with rmse or ndcg@K, on a validation "
        "split carved from the training rows of evaluate's split for --protocol and --seed "
        "(the last 10%% in time for time-global and time, a seeded 10%% of each user's "
        "training rows otherwise); print the best. The test rows are never read, so "
        "evaluate with the same --protocol and --seed then gives an honest figure for the "
        "winner. Ties go to the earlier candidate, so the defaults stay unless something "
        "is strictly better on validation.",
    )
    _add_data_options(tune_parser)
    _add_protocol_option(tune_parser, with_kfold=False)
    tune_parser.add_argument(
        "--leave-last",
        type=int_at_least(1),
        metavar="N",
        default=1,
        help="rows per user held out by --protocol time (test and validation)",
    )
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
            repeats=args.repeats,
            test_fraction=args.test_fraction,
            train_min_rating=args.train_min_rating,
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
        if args.save:
            check_params_target(args.save)  # now, not after the search
        dataset = _dataset(args, pipeline)
        result = tune(
            dataset,
            args.model,
            metric,
            n_trials=args.trials,
            seed=args.seed,
            threshold=args.relevance_threshold,
            progress=True,
            protocol=args.protocol,
            leave_last=args.leave_last,
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
        help="seed of the holdout and k-fold splits, of validation's draw and of tune's "
        "candidate draw",
    )


def _add_protocol_option(parser: argparse.ArgumentParser, with_kfold: bool = True) -> None:
    choices = [p for p in PROTOCOLS if with_kfold or p != "kfold"]
    parser.add_argument(
        "--protocol",
        choices=choices,
        default="holdout",
        help="how to split train and test: holdout (a seeded share of each user's rows), "
        + ("kfold, " if with_kfold else "")
        + "time (each user's last --leave-last rows) or time-global (one cut in time: "
        "train before it, test after it; needs timestamps)",
    )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text}")
    return value


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
