"""The sections of the settings, one per component, each a pydantic-settings model.

A section's fields are its settings; each is read from ``RECSYS_<NAME>``
(``setting("CACHE_TTL_SECONDS", ...)``), so the environment's names stay flat
while the code reads ``settings.cache.ttl_seconds``. The order of the
sections and of their fields is the configuration table's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from recsys.config.api_keys import KeyRing
from recsys.config.values import (
    Accepts,
    ApiKeys,
    Bind,
    Count,
    CountOrOff,
    DatabaseUrl,
    DaysOrOff,
    EventWeightsValue,
    LogLevel,
    ModelName,
    NonNegative,
    OptionalPath,
    OptionalText,
    Port,
    RateLimit,
    RedisUrl,
    Seconds,
    SecondsOrNever,
    SecondsOrOff,
    SettingsError,
    ShareOrOff,
    Switch,
    Text,
    TrainingEngine,
    TrainingMode,
    WholeSeconds,
)
from recsys.data.ratings import EventWeights
from recsys.errors import quote
from recsys.models import AUTO_CANDIDATES, accepted_model_names

ENV_PREFIX = "RECSYS_"
BUNDLED_LOG = Path(__file__).resolve().parents[2] / "interactions.csv"


def setting(
    name: str,
    default: Any,
    meaning: str,
    *,
    default_text: str | None = None,
    also_env: tuple[str, ...] = (),
) -> Any:
    """Declare a setting: its field is read from ``RECSYS_<name>`` (then ``also_env``).

    Args:
        name: The name in ``create_app``'s config; ``RECSYS_<name>`` in the environment.
        default: The value when nothing sets it (already parsed).
        meaning: One line for the configuration table.
        default_text: How the table shows the default, when not ``str(default)``.
        also_env: Unprefixed environment names read after the prefixed one.
    """
    return Field(
        default,
        validation_alias=AliasChoices(ENV_PREFIX + name, *also_env),
        description=meaning,
        json_schema_extra={"default_text": default_text} if default_text else None,
    )


class _EnvironSource(EnvSettingsSource):
    """The environment source of pydantic-settings over a given mapping (``os.environ``)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._environ)


class Section(BaseSettings):
    """The settings of one component, each read from its ``RECSYS_*`` variable.

    A section made directly (``ServerSection()``) reads ``os.environ``; an
    unknown keyword is refused (``extra="forbid"``).
    """

    model_config = SettingsConfigDict(
        case_sensitive=True,
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_default=False,
        # A value is one line of text (BIND is comma-separated), never JSON.
        enable_decoding=False,
        arbitrary_types_allowed=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # .env is read by the entry points into the environment (app.load_dotenv_files).
        return init_settings, env_settings

    @classmethod
    def names(cls) -> dict[str, str]:
        """Return each setting's config name (``MODEL_DIR``) -> its field name (``model_dir``)."""
        return {
            env_names(field)[0].removeprefix(ENV_PREFIX): name
            for name, field in cls.model_fields.items()
        }

    @classmethod
    def read(cls, environ: Mapping[str, str], config: Mapping[str, Any]) -> Self:
        """Return the section read from config (by setting name), the environment, the defaults.

        Raises:
            SettingsError: A value is unusable; the message names where it came from.
        """
        overrides = {field: config[name] for name, field in cls.names().items() if name in config}
        sources = (InitSettingsSource(cls, overrides), _EnvironSource(cls, environ))
        try:
            # A keyword of BaseSettings.__init__ that mypy does not see: it
            # types the constructor from the fields alone (dataclass_transform).
            return cls(_build_sources=(sources, {}))  # type: ignore[call-arg]
        except ValidationError as exc:
            raise cls._one_line(exc.errors()[0], environ, config) from None

    @classmethod
    def _one_line(
        cls, error: ErrorDetails, environ: Mapping[str, str], config: Mapping[str, Any]
    ) -> SettingsError:
        """Return pydantic's first error as one line naming the variable or config key."""
        # An error is located by the key the value was given under: the
        # variable's name (the environment, or config through its alias).
        field_name = next(
            name
            for name, field in cls.model_fields.items()
            if error["loc"][0] == name or error["loc"][0] in env_names(field)
        )
        field = cls.model_fields[field_name]
        config_name = env_names(field)[0].removeprefix(ENV_PREFIX)
        if config_name in config:
            source, raw = config_name, config[config_name]
        else:
            source = next(env for env in env_names(field) if env in environ)
            raw = environ[source]
        accepts = next(m for m in field.metadata if isinstance(m, Accepts))
        cause = error.get("ctx", {}).get("error")
        if accepts.own_message and isinstance(cause, ValueError):
            return SettingsError(f"{source}: {cause}")
        return SettingsError(f"{source}: expected {accepts.text}, got {quote(raw)}")


def env_names(field: FieldInfo) -> tuple[str, ...]:
    """Return the environment names a setting is read from, the ``RECSYS_`` one first."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else ()
    return tuple(choice for choice in choices if isinstance(choice, str))


# -- the sections ------------------------------------------------------------------
# Their order, and their settings' order, is the configuration table's.


class TrainingSection(Section):
    """What is trained: the model, its hyper-parameters and the ratings' weights."""

    model: ModelName = setting(
        "MODEL",
        "svd",
        "model behind `/recommend`: "
        + accepted_model_names(allow_auto=True, code=True)
        + "; `auto` trains "
        + ", ".join(f"`{name}`" for name in AUTO_CANDIDATES)
        + " and serves the best by NDCG@10 on validation rows",
    )
    params_path: OptionalPath = setting(
        "MODEL_PARAMS_PATH",
        None,
        "hyper-parameters per model, as `tune --save` writes them",
        default_text="`instance/model_params.json` if present",
    )
    event_weights: EventWeightsValue = setting(
        "EVENT_WEIGHTS",
        EventWeights(),
        "engagement points per event type, `TYPE=POINTS` pairs (the types not named keep "
        "their default); a rating is worth its points times its stars, a dislike's points "
        "are 0 or less; a pair's points summed and clipped to 1-5 are its rating",
        default_text="`" + EventWeights().describe() + "`",
    )


class StoreSection(Section):
    """The event store, and the log and catalog an empty one is filled from."""

    database_url: DatabaseUrl = setting(
        "DATABASE_URL",
        None,
        "the event store: `sqlite:///FILE` or `postgresql://...` (`postgres://` too)",
        default_text="`sqlite:///instance/recsys.db`",
        also_env=("DATABASE_URL",),
    )
    timeout_seconds: Seconds = setting(
        "DB_TIMEOUT_SECONDS",
        5.0,
        "longest wait for the database: connecting, one statement, SQLite's write lock "
        "(keep it well under the server's worker timeout)",
    )
    data_path: OptionalPath = setting(
        "DATA_PATH",
        BUNDLED_LOG,
        "the interactions log loaded into an empty store by `.venv/bin/flask --app app init`",
        default_text="`interactions.csv`",
    )
    catalog_path: OptionalPath = setting(
        "CATALOG_PATH",
        None,
        "its catalog (`product_id,name,category,price`); products without one are named by id",
        default_text="`NAME.products.csv`, else `products.csv`, beside `DATA_PATH` if present",
    )
    event_retention_days: DaysOrOff = setting(
        "EVENT_RETENTION_DAYS",
        None,
        "keep events this many days: training reads only newer ones, and "
        "`.venv/bin/flask --app app prune-events` deletes the older ones, and the A/B "
        "exposures of that age (0: keep every event)",
        default_text="0 (off)",
    )


class RegistrySection(Section):
    """The model registry: where published versions live, how many are kept."""

    model_dir: OptionalPath = setting(
        "MODEL_DIR", None, "artifact directory", default_text="`instance/models`"
    )
    keep_versions: Count = setting(
        "KEEP_MODEL_VERSIONS",
        5,
        "published versions kept, besides those a running A/B test pins",
    )


class JobsSection(Section):
    """Retraining: when it runs, in which process, on which engine; and who serves its result."""

    auto_retrain: Switch = setting(
        "AUTO_RETRAIN",
        True,
        "retrain automatically, after RETRAIN_EVERY_EVENTS new events or RETRAIN_EVERY_MINUTES "
        "since the last training, whichever comes first (0: only on request)",
        default_text="1",
    )
    retrain_every_events: CountOrOff = setting(
        "RETRAIN_EVERY_EVENTS",
        10_000,
        "automatic retrain after this many new events (counted by each serving process)",
    )
    retrain_every_minutes: SecondsOrOff = setting(
        "RETRAIN_EVERY_MINUTES",
        1440.0,
        "automatic retrain when the last training (of any process) is this old; 1440: a day",
    )
    gate_tolerance: NonNegative = setting(
        "GATE_TOLERANCE",
        0.02,
        "quality gate: a new version goes live only if its NDCG@10 on a held-out split of the "
        "current data is at least the live version's on that split minus this share of it "
        "(0.02: 2 % worse at most); else it is kept as `rejected`",
    )
    mode: TrainingMode = setting(
        "TRAINING_MODE",
        "thread",
        "where retraining runs: `thread` (in the serving process) or `worker` (queued in "
        "the database for `.venv/bin/flask --app app worker`, another process)",
    )
    engine: TrainingEngine = setting(
        "TRAINING_ENGINE",
        "local",
        "what fits the model: `local` (this process; ALS through `implicit`) or `spark` "
        "(ALS on PySpark ML, `MODEL=als` only; "
        "`.venv/bin/python -m pip install -r requirements-spark.txt`)",
    )
    spark_master: Text = setting(
        "SPARK_MASTER", "local[2]", "the Spark master of the `spark` engine"
    )
    spark_staging_uri: OptionalText = setting(
        "SPARK_STAGING_URI",
        None,
        "where the `spark` engine keeps ALS checkpoints: a folder or URI every executor "
        "reaches (`hdfs://...`, `s3a://...`, a shared mount); unset: local mode uses a "
        "temporary folder, a cluster runs without checkpoints",
    )
    spark_jdbc_partitions: Count = setting(
        "SPARK_JDBC_PARTITIONS",
        4,
        "parallel reads of the PostgreSQL store by the `spark` engine (ranges of the id)",
    )
    worker_poll_seconds: Seconds = setting(
        "WORKER_POLL_SECONDS",
        2.0,
        "how often an idle `.venv/bin/flask --app app worker` looks for a queued job",
    )
    lease_seconds: Seconds = setting(
        "JOB_LEASE_SECONDS",
        60.0,
        "how long a job a worker claimed stays `running` without a beat of its worker (which "
        "beats every third of it): a killed worker's job is failed within this plus "
        "WORKER_POLL_SECONDS by a live worker, or by the first retrain request after it",
    )
    model_refresh_seconds: SecondsOrNever = setting(
        "MODEL_REFRESH_SECONDS",
        10.0,
        "how often a worker looks for a version another process published (0: never)",
    )


class ServerSection(Section):
    """The HTTP server: where it listens (`python app.py`, serve.py), what it takes, its log."""

    ingest_max_bytes: Count = setting(
        "INGEST_MAX_BYTES",
        4 * 1024 * 1024,
        "largest `POST /interactions` body, whatever its transfer encoding",
        default_text="4194304 (4 MiB)",
    )
    host: Text = setting(
        "HOST", "127.0.0.1", "where `.venv/bin/python app.py` listens (also `--host`)"
    )
    port: Port = setting("PORT", 5000, "its port (also `--port`)", also_env=("PORT",))
    bind: Bind = setting(
        "BIND",
        ("127.0.0.1:8000",),
        "where the production server listens (`make serve`, also `HOST=` and `PORT=`): "
        "`HOST:PORT`, `[IPV6]:PORT` or `unix:PATH` (gunicorn.conf.py also takes `fd://N` "
        "and several, comma-separated)",
        default_text="127.0.0.1:8000",
    )
    workers: Count = setting("WORKERS", 2, "the production server's worker processes")
    threads: Count = setting(
        "THREADS", 8, "threads per worker that run the app (requests each serves at once)"
    )
    log_level: LogLevel = setting(
        "LOG_LEVEL", "INFO", "logging level of the service's messages (on stderr)"
    )
    trusted_proxies: CountOrOff = setting(
        "TRUSTED_PROXIES",
        None,
        "proxies in front of the service that append the client's address to "
        "`X-Forwarded-For` (nginx with `deploy/nginx.conf`: 1); the client address the "
        "per-address rate limit counts and the access log shows is then taken from it "
        "(0: the connection's own address; never trust a header nobody in front sets)",
        default_text="0",
    )


class SecuritySection(Section):
    """Who may call what: API keys, the open-service guard, rate limits."""

    api_keys: ApiKeys = setting(
        "API_KEYS",
        KeyRing(),
        "API keys: comma-separated `ROLES:SHA256HEX` entries "
        "(`.venv/bin/flask --app app create-key` prints one), roles `read`, `ingest`, "
        "`admin` joined by `+`; none: every endpoint open",
        default_text="none",
    )
    allow_open: Switch = setting(
        "ALLOW_OPEN",
        False,
        "serve without API keys on a non-loopback address too "
        "(`.venv/bin/python app.py`, serve.py, gunicorn)",
        default_text="0",
    )
    metrics_open: Switch = setting(
        "METRICS_OPEN",
        True,
        "`/metrics` answers without a key (when false it needs an `admin` key)",
        default_text="1",
    )
    rate_limit: RateLimit = setting(
        "RATE_LIMIT",
        "1000 per second",
        "requests per API key to the `read` and `admin` endpoints, for keys without a rate "
        "of their own (`create-key --rate`); `''` for none",
    )
    rate_limit_ingest: RateLimit = setting(
        "RATE_LIMIT_INGEST",
        "200 per second",
        "the same for `POST /interactions` (`ingest`; a batch is one request), per key or, "
        "without one, per client address",
    )
    rate_limit_address: RateLimit = setting(
        "RATE_LIMIT_ADDRESS",
        "50 per second",
        "requests per client address without an API key (a service without keys, browsers) "
        "to the `read` and `admin` endpoints, and, counted apart, requests refused for their "
        "key (401); `''` for none",
    )


class RedisSection(Section):
    """The Redis every process shares (rate-limit counters, histories, announcements)."""

    url: RedisUrl = setting(
        "REDIS_URL",
        None,
        "the Redis every worker and server shares: rate-limit counters, users' histories, and "
        "the announcements of new events that let cached answers be served without a read "
        "(without it: counters per process, histories read from the store on every request)",
        also_env=("REDIS_URL",),
    )
    timeout_seconds: Seconds = setting(
        "REDIS_TIMEOUT_SECONDS",
        0.25,
        "longest wait for Redis, connecting or for one command; past it Redis counts as down "
        "and is left alone for 2 s (histories read from the store, rate limits counted in "
        "each process)",
    )


class CacheSection(Section):
    """The answer caches: rankings and answers in each process, histories in Redis."""

    enabled: Switch = setting(
        "CACHE",
        True,
        "cache answers: each user's ranked candidates and finished answers per model version "
        "(in each process) and, with `REDIS_URL`, users' histories (in Redis)",
        default_text="1",
    )
    ttl_seconds: WholeSeconds = setting(
        "CACHE_TTL_SECONDS", 600, "how long a cached ranking or history is kept at most"
    )
    max_entries: Count = setting(
        "CACHE_MAX_ENTRIES",
        10_000,
        "ranked candidate lists, and finished answers, kept in each process (a few KiB "
        "each); past it the least recently used go: size it above the active users",
    )
    key_prefix: Text = setting(
        "CACHE_KEY_PREFIX",
        "recsys:",
        "prefix of the service's keys in Redis (services or environments sharing one Redis "
        "need different ones)",
    )


class ExplorationSection(Section):
    """Exploration: a share of each list for new or rarely shown products."""

    share: ShareOrOff = setting(
        "EXPLORATION",
        0.1,
        "share of a first page's slots given to new or rarely shown products, the best for "
        "the user by content (0.1: about one in ten; 0: off)",
    )
    impressions: Count = setting(
        "EXPLORATION_IMPRESSIONS",
        100,
        "impressions (over every server) after which a product is no longer explored",
    )
    sync_seconds: Seconds = setting(
        "EXPLORATION_SYNC_SECONDS",
        10.0,
        "how often a process adds the impressions it counted to the store's and reads "
        "everyone's back (explored choices change only then)",
    )


class ExperimentsSection(Section):
    """A/B tests: exposures, attribution, guardrails."""

    exposure_log: Switch = setting(
        "AB_EXPOSURE_LOG",
        True,
        "record each list served inside an A/B test (written in batches off the request path)",
        default_text="1",
    )
    attribution_hours: Seconds = setting(
        "AB_ATTRIBUTION_HOURS",
        24.0,
        "a click or purchase counts for a served list this long after it was shown",
    )
    refresh_seconds: Seconds = setting(
        "AB_REFRESH_SECONDS",
        5.0,
        "how often a worker looks for an experiment started or stopped by another process",
    )
    latency_margin: NonNegative = setting(
        "AB_LATENCY_MARGIN",
        0.2,
        "guardrail: a variant's p95 latency may exceed control's by this fraction",
    )
    error_margin: NonNegative = setting(
        "AB_ERROR_MARGIN",
        0.01,
        "guardrail: a variant's error rate may exceed control's by this much (0.01: 1 point)",
    )
