"""Every setting of the service in one place: name, default, type, validation.

A setting is read, in order of precedence, from the ``config`` mapping given
to ``create_app`` (tests), the environment variable ``RECSYS_<NAME>``, an
unprefixed environment variable for the few names hosting platforms set
themselves (``DATABASE_URL``, ``PORT``, ``REDIS_URL``), and the default. Each
value is parsed once, here; a bad one raises ``SettingsError`` whose message is
one line naming the variable, what it accepts and what it got (or, for values
that may hold a secret, what is wrong with it without repeating it). The
configuration table of the docs (docs/configuration.md) is generated from
``SETTINGS`` (a test keeps the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from gunicorn.util import parse_address
from limits import parse_many

from recsys.data.catalog import catalog_beside
from recsys.errors import RecsysError, quote
from recsys.models import MODEL_ALIASES, accepted_model_names, canonical_model_name
from recsys.serving.api_keys import KeyRing

ENV_PREFIX = "RECSYS_"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_LOG = PROJECT_ROOT / "interactions.csv"
# prometheus-client's own variable (unprefixed: the library reads it at import).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
_model_name.own_message = True  # type: ignore[attr-defined]


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(_boolean.accepted)  # type: ignore[attr-defined]


_boolean.accepted = "1 or 0 (true/false, yes/no, on/off)"  # type: ignore[attr-defined]


def _api_keys(value: Any) -> KeyRing:
    if isinstance(value, KeyRing):
        return value
    return KeyRing.parse("" if value is None else str(value))


_api_keys.accepted = "comma-separated ROLES:SHA256HEX entries"  # type: ignore[attr-defined]
# Its messages name the bad entry without repeating it: it may be a key pasted by mistake.
_api_keys.own_message = True  # type: ignore[attr-defined]


def _rate_limit(value: Any) -> str | None:
    """Return a limit in the syntax of the ``limits`` library, or None for no limit."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        items = parse_many(text)
    except ValueError:
        raise ValueError(_rate_limit.accepted) from None  # type: ignore[attr-defined]
    if any(item.amount < 1 for item in items):
        raise ValueError(_rate_limit.accepted)  # type: ignore[attr-defined]
    return text


_rate_limit.accepted = (  # type: ignore[attr-defined]
    "a limit such as '50 per second' or '50/second;1000/hour' (amounts from 1), or '' for none"
)

REDIS_URL_ACCEPTED = "redis://[:PASSWORD@]HOST:PORT[/DB], rediss://... or redis+unix://PATH"


def _redis_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    scheme, separator, rest = text.partition("://")
    if not separator or scheme not in ("redis", "rediss", "redis+unix") or not rest:
        # Never echo the value: it may hold a password.
        raise ValueError(f"expected {REDIS_URL_ACCEPTED} (the value given is not shown)")
    return text


_redis_url.accepted = REDIS_URL_ACCEPTED  # type: ignore[attr-defined]
_redis_url.own_message = True  # type: ignore[attr-defined]


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("a non-empty text")
    return text


_text.accepted = "a non-empty text"  # type: ignore[attr-defined]


def _one_of(*choices: str) -> Callable[[Any], str]:
    accepted = "one of " + ", ".join(choices)

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(accepted)
        return text

    parse.accepted = accepted  # type: ignore[attr-defined]
    return parse


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


def _bind(value: Any) -> tuple[str, ...]:
    """Return gunicorn's listening addresses, each parsed as gunicorn parses it.

    Port 0 is refused: each worker binds a socket of its own (``reuse_port``),
    and each would be given a different free port.
    """
    addresses = tuple(part.strip() for part in str(value).split(","))
    for address in addresses:
        try:
            parsed = parse_address(address) if address else None
        except RuntimeError:
            parsed = None
        if parsed is None or parsed == "":
            raise ValueError(_bind.accepted)  # type: ignore[attr-defined]
        if isinstance(parsed, tuple) and not 1 <= parsed[1] <= 65535:
            raise ValueError(_bind.accepted)  # type: ignore[attr-defined]
        if isinstance(parsed, int) and parsed < 0:
            raise ValueError(_bind.accepted)  # type: ignore[attr-defined]
    return addresses


_bind.accepted = (  # type: ignore[attr-defined]
    "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N (several: comma-separated; ports 1 to 65535)"
)


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default, parser and meaning.

    Attributes:
        name: The key in ``create_app``'s config; ``RECSYS_<name>`` in the environment.
        default: The value when nothing sets it (already parsed).
        parse: Turns text or a config value into the typed value; raises ValueError.
        meaning: One line for the configuration table.
        default_text: How the table shows the default, when not ``repr``.
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
        "the interactions log loaded into an empty store by `.venv/bin/flask --app app init`",
        default_text="`interactions.csv`",
    ),
    Setting(
        "CATALOG_PATH",
        None,
        _optional_path,
        "its catalog (`product_id,name,category,price`); products without one are named by id",
        default_text="`NAME.products.csv`, else `products.csv`, beside `DATA_PATH` if present",
    ),
    Setting(
        "MODEL_DIR", None, _optional_path, "artifact directory", default_text="`instance/models`"
    ),
    Setting(
        "KEEP_MODEL_VERSIONS",
        5,
        _integer(1),
        "published versions kept, besides those a running A/B test pins",
    ),
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
        "TRAINING_MODE",
        "thread",
        _one_of("thread", "worker"),
        "where retraining runs: `thread` (in the serving process) or `worker` (queued in "
        "the database for `.venv/bin/flask --app app worker`, another process)",
    ),
    Setting(
        "TRAINING_ENGINE",
        "local",
        _one_of("local", "spark"),
        "what fits the model: `local` (this process; ALS through `implicit`) or `spark` "
        "(ALS on PySpark ML, `MODEL=als` only; "
        "`.venv/bin/python -m pip install -r requirements-spark.txt`)",
    ),
    Setting("SPARK_MASTER", "local[2]", _text, "the Spark master of the `spark` engine"),
    Setting(
        "WORKER_POLL_SECONDS",
        2.0,
        _number(0, low_open=True),
        "how often an idle `.venv/bin/flask --app app worker` looks for a queued job",
    ),
    Setting(
        "JOB_LEASE_SECONDS",
        60.0,
        _number(0, low_open=True),
        "how long a job a worker claimed stays `running` without a beat of its worker (which "
        "beats every third of it): a killed worker's job is failed within this plus "
        "WORKER_POLL_SECONDS by a live worker, or by the first retrain request after it",
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
    Setting("HOST", "127.0.0.1", _text, "where `.venv/bin/python app.py` listens (also `--host`)"),
    Setting("PORT", 5000, _integer(1, 65535), "its port (also `--port`)", also_env=("PORT",)),
    Setting(
        "BIND",
        ("127.0.0.1:8000",),
        _bind,
        "where gunicorn listens: `HOST:PORT`, `[IPV6]:PORT`, `unix:PATH` or `fd://N` "
        "(several: comma-separated)",
        default_text="127.0.0.1:8000",
    ),
    Setting("WORKERS", 2, _integer(1), "gunicorn's worker processes"),
    Setting(
        "THREADS", 8, _integer(1), "threads per gunicorn worker (requests each serves at once)"
    ),
    Setting("LOG_LEVEL", "INFO", _text, "logging level of the service's messages (on stderr)"),
    Setting(
        "API_KEYS",
        KeyRing(),
        _api_keys,
        "API keys: comma-separated `ROLES:SHA256HEX` entries "
        "(`.venv/bin/flask --app app create-key` prints one), roles `read`, `ingest`, "
        "`admin` joined by `+`; none: every endpoint open",
        default_text="none",
    ),
    Setting(
        "ALLOW_OPEN",
        False,
        _boolean,
        "serve without API keys on a non-loopback address too "
        "(`.venv/bin/python app.py`, gunicorn)",
        default_text="0",
    ),
    Setting(
        "METRICS_OPEN",
        True,
        _boolean,
        "`/metrics` answers without a key (when false it needs an `admin` key)",
        default_text="1",
    ),
    Setting(
        "RATE_LIMIT",
        "50 per second",
        _rate_limit,
        "requests per API key (per client address without keys) to the `read` and `admin` "
        "endpoints; `''` for none",
    ),
    Setting(
        "RATE_LIMIT_INGEST",
        "10 per second",
        _rate_limit,
        "the same for `POST /interactions` (`ingest`)",
    ),
    Setting(
        "REDIS_URL",
        None,
        _redis_url,
        "the Redis every worker and server shares: rate-limit counters, users' histories, and "
        "the announcements of new events that let kept answers be served without a read "
        "(without it: counters per process, histories read from the store on every request)",
        also_env=("REDIS_URL",),
    ),
    Setting(
        "REDIS_TIMEOUT_SECONDS",
        0.25,
        _number(0, low_open=True),
        "longest wait for Redis, connecting or for one command; past it Redis counts as down "
        "and is left alone for 2 s (histories read from the store, rate limits counted in "
        "each process)",
    ),
    Setting(
        "CACHE",
        True,
        _boolean,
        "cache answers: each user's ranked candidates and finished answers per model version "
        "(in each process) and, with `REDIS_URL`, users' histories (in Redis)",
        default_text="1",
    ),
    Setting(
        "CACHE_TTL_SECONDS",
        600,
        _integer(1),
        "how long a cached ranking or history is kept at most",
    ),
    Setting(
        "CACHE_MAX_ENTRIES",
        10_000,
        _integer(1),
        "ranked candidate lists, and finished answers, kept in each process (a few KiB "
        "each); past it the least recently used go: size it above the active users",
    ),
    Setting(
        "CACHE_KEY_PREFIX",
        "recsys:",
        _text,
        "prefix of the service's keys in Redis (services or environments sharing one Redis "
        "need different ones)",
    ),
    Setting(
        "AB_EXPOSURE_LOG",
        True,
        _boolean,
        "record each list served inside an A/B test (written in batches off the request path)",
        default_text="1",
    ),
    Setting(
        "AB_ATTRIBUTION_HOURS",
        24.0,
        _number(0, low_open=True),
        "a click or purchase counts for a served list this long after it was shown",
    ),
    Setting(
        "AB_REFRESH_SECONDS",
        5.0,
        _number(0, low_open=True),
        "how often a worker looks for an experiment started or stopped by another process",
    ),
    Setting(
        "AB_LATENCY_MARGIN",
        0.2,
        _number(0),
        "guardrail: a variant's p95 latency may exceed control's by this fraction",
    ),
    Setting(
        "AB_ERROR_MARGIN",
        0.01,
        _number(0),
        "guardrail: a variant's error rate may exceed control's by this much (0.01: 1 point)",
    ),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The parsed settings; ``values`` maps each name of ``SETTINGS`` to its value.

    Attributes:
        values: Name -> parsed value.
        instance_path: The Flask instance folder (default places of the store
            and the artifacts).
        extra: Config keys that are not settings (Flask's own, such as ``TESTING``).
        metrics_dir: Where the processes of one server share their metrics
            (prometheus-client's multiprocess mode): ``PROMETHEUS_MULTIPROC_DIR``,
            which gunicorn.conf.py sets and prometheus-client itself reads; None
            for a single process.
    """

    values: Mapping[str, Any]
    instance_path: Path
    extra: Mapping[str, Any] = field(default_factory=dict)
    metrics_dir: Path | None = None

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
                if getattr(setting.parse, "own_message", False):
                    raise SettingsError(f"{source}: {exc}") from None
                raise SettingsError(f"{source}: expected {accepted}, got {quote(raw)}") from None
        extra = {k: v for k, v in config.items() if k not in _BY_NAME}
        metrics_dir = environ.get(METRICS_DIR_ENV) or None
        return cls(
            values=values,
            instance_path=Path(instance_path),
            extra=extra,
            metrics_dir=Path(metrics_dir) if metrics_dir else None,
        )

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
        """The catalog file of the bootstrap log: configured, or the one beside it."""
        if self["CATALOG_PATH"] is not None:
            return self["CATALOG_PATH"]
        log = self["DATA_PATH"]
        return None if log is None else catalog_beside(log)

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
    """Return the configuration table of docs/configuration.md (Markdown)."""
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
