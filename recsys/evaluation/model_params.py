"""Which settings each model trains with: parameter files, and building models from them.

A parameter file is JSON mapping model names to keyword arguments of the
model's class, for example::

    {"svd": {"n_factors": 20, "n_epochs": 50, "lr_all": 0.01, "reg_all": 0.1},
     "als": {"factors": 32, "regularization": 15.0, "alpha": 1.0, "iterations": 15}}

Models absent from the file keep their class defaults.

- ``save_model_params`` writes one model's entry, keeping the others (what
  ``recommendation_system.py tune --save PATH`` does).
- ``load_model_params`` reads and checks a file (``evaluate --params PATH``
  and the service's ``MODEL_PARAMS_PATH``).
- ``model_factory`` turns a model name, such parameters and the data's rating
  scale into a function that builds fresh models: the one way ``evaluate``,
  ``tune`` and the default pipeline construct a model.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recsys.data.files import make_writable_dir
from recsys.data.interactions import read_data_file
from recsys.errors import DataFileError, OutputFileError, quote
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

    Args:
        path: The JSON file.

    Returns:
        Model name -> keyword arguments, as the file holds them.

    Raises:
        DataFileError: The file is missing, unreadable, empty, not JSON, or
            names unknown models or parameters.
    """
    path = Path(path)
    text = read_data_file(path)
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(content, dict) or not all(isinstance(v, dict) for v in content.values()):
        raise DataFileError(path, "expected an object mapping model names to parameter objects")
    for name, params in content.items():
        if name not in MODELS:
            raise DataFileError(
                path, f"unknown model {quote(name)}; expected one of {', '.join(sorted(MODELS))}"
            )
        try:
            MODELS[name](**params)
        except (TypeError, ValueError) as exc:
            raise DataFileError(path, f"bad parameters for {quote(name)}: {exc}") from None
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
    _write_atomically(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


def check_params_target(path: str | Path) -> None:
    """Check that ``save_model_params`` can write a file, before a long search ends in it.

    Raises:
        DataFileError: The file exists and is not a parameter file.
        OutputFileError: Its folder cannot be made, or files cannot be written in it.
    """
    path = Path(path)
    if path.exists():
        load_model_params(path)
    _writable_folder_of(path)


def _writable_folder_of(path: Path) -> None:
    """Make the file's folder if it is missing; ``OutputFileError`` naming the file if unusable."""
    try:
        make_writable_dir(path.parent)
    except OSError as exc:
        raise OutputFileError(path, exc) from None


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it.

    A temporary name of its own (``mkstemp``): two searches saving into one
    file at once never write the same temporary file.

    Raises:
        OutputFileError: The folder cannot be made or written (nothing is left).
    """
    _writable_folder_of(path)
    temp = None
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except OSError as exc:
        raise OutputFileError(path, exc) from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):  # gone once renamed
                os.unlink(temp)
