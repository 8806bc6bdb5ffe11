"""Hyper-parameter files: which settings each model trains with.

A parameter file is JSON mapping model names to keyword arguments of the
model's class, for example::

    {"svd": {"n_factors": 20, "n_epochs": 50, "lr_all": 0.01, "reg_all": 0.1},
     "als": {"factors": 32, "regularization": 15.0, "alpha": 1.0, "iterations": 15}}

``recommendation_system.py tune --save PATH`` writes it (merging with what the
file already holds); ``load_model_params(PATH)`` is how the service and ``evaluate --params``
read it. Models absent from the file
keep their class defaults.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recsys.errors import DataFileError
from recsys.models import MODELS, canonical_model_name
from recsys.models.base import Recommender


def model_factory(
    name: str,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    rating_scale: tuple[float, float] | None = None,
) -> Callable[[], Recommender]:
    """Return a function that builds a fresh model, for evaluations that refit per fold.

    Args:
        name: A model name or alias.
        params: Model name -> keyword arguments.
        rating_scale: The data's rating scale, given to models that clip
            predicted ratings (unless the parameters set one).
    """
    name = canonical_model_name(name)
    kwargs = dict((params or {}).get(name, {}))
    if rating_scale is not None and "rating_scale" in inspect.signature(MODELS[name]).parameters:
        kwargs.setdefault("rating_scale", tuple(rating_scale))
    model_class = MODELS[name]
    return lambda: model_class(**kwargs)


def load_model_params(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check a parameter file.

    Every model named must be registered, and its parameters must be accepted
    by its class (checked by building one).

    Raises:
        DataFileError: The file is unreadable, not JSON, or names unknown
            models or parameters.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read the file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
        raise DataFileError(path, "expected an object mapping model names to parameter objects")
    for name, params in content.items():
        if name not in MODELS:
            raise DataFileError(
                path, f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}"
            )
        try:
            MODELS[name](**params)
        except (TypeError, ValueError) as exc:
            raise DataFileError(path, f"bad parameters for {name!r}: {exc}") from None
    return content


def save_model_params(path: str | Path, name: str, params: Mapping[str, Any]) -> None:
    """Write one model's parameters into a parameter file, keeping the other models'.

    The file is replaced atomically, so a reader never sees half a file.

    Args:
        path: The JSON file (created with its folder if absent).
        name: A model name or alias.
        params: Keyword arguments of the model's class.
    """
    path = Path(path)
    name = canonical_model_name(name)
    content = load_model_params(path) if path.exists() else {}
    content[name] = dict(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(content, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(temp, path)
