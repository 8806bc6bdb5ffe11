"""The web service: ``create_app`` builds it; ``python app.py`` serves it.

Configuration comes, in order, from the defaults below, ``RECSYS_*``
environment variables (``RECSYS_MODEL=popular`` sets ``MODEL``), and the
``config`` mapping passed to ``create_app`` (tests use it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flask import Flask

from recsys import api
from recsys.api import persistence
from recsys.model_params import canonical_model_name

ROOT = Path(__file__).resolve().parent

DEFAULTS: dict[str, Any] = {
    "DATA_PATH": str(ROOT / "interactions.csv"),
    "MODEL": "svd",
    "CLICK_WEIGHT": 1.0,
    "PURCHASE_WEIGHT": 2.0,
    "HOST": "127.0.0.1",
    "PORT": 5000,
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app and the model it serves.

    Args:
        config: Settings that override the defaults and the environment.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("RECSYS")
    if config:
        app.config.update(config)
    app.json.sort_keys = False

    try:
        app.config["MODEL"] = canonical_model_name(str(app.config["MODEL"]))
    except ValueError as exc:
        raise ValueError(f"MODEL: {exc}") from None
    # Event store, model artifacts and retraining: serves the newest published
    # model, training one only when none exists (see recsys/api/persistence.py).
    runtime = persistence.init_app(app)
    api.init_app(app, runtime.service)
    return app


def main() -> None:
    """Serve with Flask's development server (use gunicorn in production)."""
    parser = argparse.ArgumentParser(description="Serve the recommendation API.")
    parser.add_argument("--host", default=None, help="default 127.0.0.1 or RECSYS_HOST")
    parser.add_argument("--port", type=int, default=None, help="default 5000 or RECSYS_PORT")
    args = parser.parse_args()
    app = create_app()
    app.run(host=args.host or app.config["HOST"], port=args.port or int(app.config["PORT"]))


if __name__ == "__main__":
    main()
