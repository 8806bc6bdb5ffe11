"""Every setting of the service in one place: name, default, type, validation.

A setting is read, in order of precedence, from the ``config`` mapping given
to ``create_app`` (tests), the environment variable ``RECSYS_<NAME>``, an
unprefixed environment variable for the few names hosting platforms set
themselves (``DATABASE_URL``, ``PORT``), and the default. Each value is parsed
once, here; a bad one raises ``SettingsError`` whose message is one line naming
the variable, what it accepts and what it got. The README's configuration
table is generated from ``SETTINGS`` (a test keeps the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from recsys.errors import RecsysError, quote
from recsys.models import MODEL_ALIASES, accepted_model_names, canonical_model_name

ENV_PREFIX = "RECSYS_"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_LOG = PROJECT_ROOT / "interactions.csv"


class SettingsError(RecsysError, ValueError):
    """A setting has a value the service cannot use (one line, names the variable)."""


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    accepted = f"an integer from {low}" + (f" to {high}" if high is not None else " up")

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(accepted)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            number = int(value.strip())
        else:
            raise ValueError(accepted)
        if number < low or (high is not None and number > high):
            raise ValueError(accepted)
        return number

    parse.accepted = accepted  # type: ignore[attr-defined]
    return parse


def _number(low: float, low_open: bool = False) -> Callable[[Any], float]:
    accepted = f"a number {'>' if low_open else '>='} {low:g}"

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(accepted)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(accepted) from None
        if not math.isfinite(number) or number < low or (low_open and number == low):
            raise ValueError(accepted)
        return number

    parse.accepted = accepted  # type: ignore[attr-defined]
    return parse


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Accept "", "0", 0 and None as "off"."""

    def parse_optional(value: Any) -> Any:
        if value in (None, "", 0, "0", "off"):
            return None
        return parse(value)

    parse_optional.accepted = f"{parse.accepted}, or 0 for off"  # type: ignore[attr-defined]
    return parse_optional


def _model_name(value: Any) -> str:
    return canonical_model_name(str(value), allow_auto=True)


_model_name.accepted = accepted_model_names(allow_auto=True)  # type: ignore[attr-defined]


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("a non-empty text")
    return text


_text.accepted = "a non-empty text"  # type: ignore[attr-defined]


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(str(value))


_optional_path.accepted = "a file path"  # type: ignore[attr-defined]


def database_url(value: Any) -> str | None:
    """Return a SQLAlchemy URL for SQLite or psycopg 3, accepting the forms hosts hand out.

    ``postgres://`` and ``postgresql://`` (what hosting providers give) become
    ``postgresql+psycopg://``; ``sqlite:///FILE`` stays as it is.
    """
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise ValueError(DATABASE_URL_ACCEPTED) from None
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername in ("sqlite", "sqlite+pysqlite") and url.database not in (None, ""):
        return text
    raise ValueError(DATABASE_URL_ACCEPTED)


DATABASE_URL_ACCEPTED = "sqlite:///FILE or postgresql://USER@HOST:PORT/DB (postgres:// too)"
database_url.accepted = DATABASE_URL_ACCEPTED  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default, parser and meaning.

    Attributes:
        name: The key in ``create_app``'s config; ``RECSYS_<name>`` in the environment.
        default: The value when nothing sets it (already parsed).
        parse: Turns text or a config value into the typed value; raises ValueError.
        meaning: One line for the README's table.
        default_text: How the README shows the default, when not ``repr``.
        also_env: Unprefixed environment names read after the prefixed one.
    """

    name: str
    default: Any
    parse: Callable[[Any], Any]
    meaning: str
    default_text: str | None = None
    also_env: tuple[str, ...] = ()

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.name

    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        return "off" if self.default is None else str(self.default)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MODEL",
        "svd",
        _model_name,
        "model behind `/recommend`: "
        + accepted_model_names(allow_auto=True, code=True)
        + "; `auto` trains every model and serves the best by NDCG@10",
    ),
    Setting(
        "MODEL_PARAMS_PATH",
        None,
        _optional_path,
        "hyper-parameters per model, as `tune --save` writes them",
        default_text="`instance/model_params.json` if present",
    ),
    Setting("CLICK_WEIGHT", 1.0, _number(0), "rating points per click"),
    Setting("PURCHASE_WEIGHT", 2.0, _number(0), "extra rating points per purchase"),
    Setting(
        "DATABASE_URL",
        None,
        database_url,
        "the event store: `sqlite:///FILE` or `postgresql://...` (`postgres://` too)",
        default_text="`sqlite:///instance/recsys.db`",
        also_env=("DATABASE_URL",),
    ),
    Setting(
        "DB_TIMEOUT_SECONDS",
        5.0,
        _number(0, low_open=True),
        "longest wait for the database: connecting, one statement, SQLite's write lock "
        "(keep it well under the server's worker timeout)",
    ),
    Setting(
        "DATA_PATH",
        BUNDLED_LOG,
        _optional_path,
        "the interactions log loaded into an empty store by `flask --app app init`",
        default_text="`interactions.csv`",
    ),
    Setting(
        "CATALOG_PATH",
        None,
        _optional_path,
        "its catalog (`product_id,name,category,price`); products without one are named by id",
        default_text="`products.csv` beside `DATA_PATH` if present",
    ),
    Setting(
        "MODEL_DIR", None, _optional_path, "artifact directory", default_text="`instance/models`"
    ),
    Setting("KEEP_MODEL_VERSIONS", 5, _integer(1), "published versions kept"),
    Setting(
        "RETRAIN_EVERY_EVENTS",
        None,
        _optional(_integer(1)),
        "automatic retrain after this many new events",
    ),
    Setting(
        "RETRAIN_EVERY_MINUTES",
        None,
        _optional(_number(0, low_open=True)),
        "automatic retrain on this period",
    ),
    Setting(
        "MODEL_REFRESH_SECONDS",
        10.0,
        _number(0),
        "how often a worker looks for a version another process published (0: never)",
    ),
    Setting(
        "INGEST_MAX_BYTES",
        4 * 1024 * 1024,
        _integer(1),
        "largest `POST /interactions` body, whatever its transfer encoding",
        default_text="4194304 (4 MiB)",
    ),
    Setting("HOST", "127.0.0.1", _text, "where `python app.py` listens (also `--host`)"),
    Setting("PORT", 5000, _integer(1, 65535), "its port (also `--port`)", also_env=("PORT",)),
    Setting("LOG_LEVEL", "INFO", _text, "logging level of the service's messages (on stderr)"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The parsed settings; ``values`` maps each name of ``SETTINGS`` to its value.

    Attributes:
        values: Name -> parsed value.
        instance_path: The Flask instance folder (default places of the store
            and the artifacts).
    """

    values: Mapping[str, Any]
    instance_path: Path
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str],
        config: Mapping[str, Any] | None,
        instance_path: str | Path,
    ) -> Settings:
        """Read every setting from the config mapping, the environment and the defaults.

        Args:
            environ: The environment (``os.environ``).
            config: Overrides, by setting name (``create_app``'s argument).
            instance_path: The instance folder.

        Raises:
            SettingsError: A value is unusable; the message names where it came from.
        """
        config = dict(config or {})
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            source, raw = _lookup(setting, environ, config)
            if source is None:
                values[setting.name] = setting.default
                continue
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                accepted = getattr(setting.parse, "accepted", str(exc))
                if setting.parse is _model_name:
                    raise SettingsError(f"{source}: {exc}") from None
                raise SettingsError(f"{source}: expected {accepted}, got {quote(raw)}") from None
        extra = {k: v for k, v in config.items() if k not in _BY_NAME}
        return cls(values=values, instance_path=Path(instance_path), extra=extra)

    # -- derived places --------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The configured store, or SQLite in the instance folder."""
        return self["DATABASE_URL"] or f"sqlite:///{self.instance_path / 'recsys.db'}"

    @property
    def model_dir(self) -> Path:
        return self["MODEL_DIR"] or self.instance_path / "models"

    @property
    def model_params_path(self) -> Path | None:
        """The parameter file to train with: the configured one, or the instance one if present."""
        configured = self["MODEL_PARAMS_PATH"]
        if configured is not None:
            return configured
        default = self.instance_path / "model_params.json"
        return default if default.exists() else None

    @property
    def catalog_path(self) -> Path | None:
        """The catalog file of the bootstrap log: configured, or ``products.csv`` beside it."""
        if self["CATALOG_PATH"] is not None:
            return self["CATALOG_PATH"]
        log = self["DATA_PATH"]
        if log is None:
            return None
        beside = Path(log).with_name("products.csv")
        return beside if beside.exists() else None

    def as_flask_config(self) -> dict[str, Any]:
        """Return the values under their names, for ``app.config``."""
        return {**self.values, **self.extra}


def _lookup(
    setting: Setting, environ: Mapping[str, str], config: Mapping[str, Any]
) -> tuple[str | None, Any]:
    if setting.name in config:
        return setting.name, config[setting.name]
    for name in (setting.env_name, *setting.also_env):
        if name in environ:
            return name, environ[name]
    return None, None


def settings_table() -> str:
    """Return the README's configuration table (Markdown)."""
    lines = [
        "| environment variable (config key: without `RECSYS_`) | default | meaning |",
        "| --- | --- | --- |",
    ]
    for s in SETTINGS:
        also = "".join(f" (or `{e}`)" for e in s.also_env)
        default = s.shown_default()
        if not default.startswith("`") and default != "off":
            default = f"`{default}`"
        lines.append(f"| `{s.env_name}`{also} | {default} | {s.meaning} |")
    return "\n".join(lines)


__all__ = ["MODEL_ALIASES", "SETTINGS", "Setting", "Settings", "SettingsError", "settings_table"]
