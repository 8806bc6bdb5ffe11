"""Every setting of the service in one place: typed sections of name, default, validation.

The settings are pydantic-settings models, a section per component
(``settings.cache.ttl_seconds``, ``settings.server.workers``), so a mistyped
name is a type error (mypy) or a refused keyword (``extra="forbid"``), never a
``KeyError`` in a request. A setting is read, in order of precedence, from the
``config`` mapping given to ``create_app`` (tests; flat names such as
``"MODEL_DIR"``), the environment variable ``RECSYS_<NAME>``, an unprefixed
environment variable for the few names hosting platforms set themselves
(``DATABASE_URL``, ``PORT``, ``REDIS_URL``), and the default. Each value is
parsed once, here; a bad one raises ``SettingsError`` whose message is one line
naming the variable, what it accepts and what it got (or, for values that may
hold a secret, what is wrong with it without repeating it). The configuration
table of the docs (docs/configuration.md) is generated from the sections (a
test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from recsys.config.sections import (
    ENV_PREFIX,
    CacheSection,
    ExperimentsSection,
    ExplorationSection,
    JobsSection,
    RedisSection,
    RegistrySection,
    Section,
    SecuritySection,
    ServerSection,
    StoreSection,
    TrainingSection,
    env_names,
)
from recsys.config.values import SettingsError, database_url
from recsys.data.catalog import catalog_beside
from recsys.models import MODEL_ALIASES

# Settings that were replaced: naming one is an error that says what replaces
# it, never a value silently ignored.
RETIRED_SETTINGS = {
    ENV_PREFIX + "CLICK_WEIGHT": "set RECSYS_EVENT_WEIGHTS=click=POINTS instead",
    ENV_PREFIX + "PURCHASE_WEIGHT": (
        "set RECSYS_EVENT_WEIGHTS=purchase=POINTS instead (a purchase's whole points: "
        "the old click and purchase weights added)"
    ),
}

# prometheus-client's own variable (unprefixed: the library reads it at import).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Settings(BaseModel):
    """The parsed settings, a section per component, and the places derived from them.

    Attributes:
        instance_path: The Flask instance folder (default places of the store
            and the artifacts).
        extra: Config keys that are not settings (Flask's own, such as ``TESTING``).
        metrics_dir: Where the processes of one server share their metrics
            (prometheus-client's multiprocess mode): ``PROMETHEUS_MULTIPROC_DIR``,
            which gunicorn.conf.py sets and prometheus-client itself reads; None
            for a single process.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    training: TrainingSection
    store: StoreSection
    registry: RegistrySection
    jobs: JobsSection
    server: ServerSection
    security: SecuritySection
    redis: RedisSection
    cache: CacheSection
    exploration: ExplorationSection
    experiments: ExperimentsSection
    instance_path: Path
    extra: dict[str, Any] = {}
    metrics_dir: Path | None = None

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
        for retired in RETIRED_SETTINGS:
            if retired in environ or retired.removeprefix(ENV_PREFIX) in config:
                raise SettingsError(f"{retired} is no more: {RETIRED_SETTINGS[retired]}")
        sections = {name: section.read(environ, config) for name, section in SECTIONS.items()}
        metrics_dir = environ.get(METRICS_DIR_ENV) or None
        return cls.model_validate(
            {
                **sections,
                "instance_path": Path(instance_path),
                "extra": {k: v for k, v in config.items() if k not in setting_names()},
                "metrics_dir": Path(metrics_dir) if metrics_dir else None,
            }
        )

    # -- derived places --------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The configured store, or SQLite in the instance folder."""
        return self.store.database_url or f"sqlite:///{self.instance_path / 'recsys.db'}"

    @property
    def model_dir(self) -> Path:
        return self.registry.model_dir or self.instance_path / "models"

    @property
    def model_params_path(self) -> Path | None:
        """The parameter file to train with: the configured one, or the instance one if present."""
        configured = self.training.params_path
        if configured is not None:
            return configured
        default = self.instance_path / "model_params.json"
        return default if default.exists() else None

    @property
    def catalog_path(self) -> Path | None:
        """The catalog file of the bootstrap log: configured, or the one beside it."""
        if self.store.catalog_path is not None:
            return self.store.catalog_path
        log = self.store.data_path
        return None if log is None else catalog_beside(log)


# Each section's attribute in Settings -> its class, in the configuration table's order.
SECTIONS: dict[str, type[Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}


@dataclass(frozen=True)
class Setting:
    """One setting as the configuration table shows it.

    Attributes:
        name: The key in ``create_app``'s config; ``RECSYS_<name>`` in the environment.
        section: The section holding it (``cache``).
        field: Its attribute there (``ttl_seconds``).
        default: The value when nothing sets it (already parsed).
        meaning: One line for the configuration table.
        default_text: How the table shows the default, when not ``str(default)``.
        also_env: Unprefixed environment names read after the prefixed one.
    """

    name: str
    section: str
    field: str
    default: Any
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


def _describe(section: str, field_name: str, section_type: type[Section]) -> Setting:
    field = section_type.model_fields[field_name]
    env_name, *also_env = env_names(field)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    default_text = extra.get("default_text")
    return Setting(
        name=env_name.removeprefix(ENV_PREFIX),
        section=section,
        field=field_name,
        default=field.default,
        meaning=field.description or "",
        default_text=default_text if isinstance(default_text, str) else None,
        also_env=tuple(also_env),
    )


SETTINGS: tuple[Setting, ...] = tuple(
    _describe(section, field, section_type)
    for section, section_type in SECTIONS.items()
    for field in section_type.model_fields
)


def setting_names() -> frozenset[str]:
    """Return the config names of every setting (``MODEL_DIR``, ``CACHE``...)."""
    return frozenset(s.name for s in SETTINGS)


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


__all__ = [
    "MODEL_ALIASES",
    "SETTINGS",
    "CacheSection",
    "ExperimentsSection",
    "ExplorationSection",
    "JobsSection",
    "RedisSection",
    "RegistrySection",
    "SecuritySection",
    "ServerSection",
    "Setting",
    "Settings",
    "SettingsError",
    "StoreSection",
    "TrainingSection",
    "database_url",
    "settings_table",
]
