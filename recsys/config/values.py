"""The values a setting may take: a type per kind, what it accepts, how text becomes it.

Numbers, switches and texts are pydantic's own types under constraints; the
values pydantic has no type for (a model name, API keys, a rate limit, a
database or Redis URL, gunicorn's bind) have a parser here. Each type carries
an ``Accepts`` marker: what a bad value's one-line message says it expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from gunicorn.util import parse_address
from pydantic import BeforeValidator, Field, StringConstraints

from recsys.config.api_keys import KeyRing, check_rate
from recsys.data.interactions import EVENT_TYPES
from recsys.data.ratings import EventWeights
from recsys.errors import RecsysError
from recsys.models import accepted_model_names, canonical_model_name


class SettingsError(RecsysError, ValueError):
    """A setting has a value the service cannot use (one line, names the variable)."""


@dataclass(frozen=True)
class Accepts:
    """What a setting accepts, for its error message (a marker in its ``Annotated`` type).

    Attributes:
        text: The accepted values, as "expected TEXT, got VALUE" shows them.
        own_message: The parser's message is shown instead (it names what is
            wrong without repeating a value that may be a secret).
    """

    text: str
    own_message: bool = False


# -- parsers of the values pydantic has no type for ------------------------------


def _off_is_none(value: Any) -> Any:
    """Read "", "0", 0, "off" and None as "off" (None)."""
    return None if value in (None, "", 0, "0", "off") else value


def _off_is_zero(value: Any) -> Any:
    """Read "", "0", 0, "off" and None as a share of 0 (off)."""
    return 0.0 if _off_is_none(value) is None else value


def _empty_is_none(value: Any) -> Any:
    return None if value in (None, "") else value


def lowercase(value: Any) -> Any:
    """Strip and lower-case a text (other values pass unchanged)."""
    return value.strip().lower() if isinstance(value, str) else value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: Any) -> str:
    """Return a logging level's name in capitals; a misspelt one is refused, not read as INFO."""
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


def _model_name(value: Any) -> str:
    return canonical_model_name(str(value), allow_auto=True)


def _api_keys(value: Any) -> KeyRing:
    if isinstance(value, KeyRing):
        return value
    return KeyRing.parse("" if value is None else str(value))


RATE_LIMIT_ACCEPTED = (
    "a limit such as '50 per second' or '50/second;1000/hour' (amounts from 1), or '' for none"
)


def _rate_limit(value: Any) -> str | None:
    """Return a limit in the syntax of the ``limits`` library, or None for no limit."""
    if value in (None, ""):
        return None
    try:
        return check_rate(str(value))
    except ValueError:
        raise ValueError(RATE_LIMIT_ACCEPTED) from None


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


DATABASE_URL_ACCEPTED = "sqlite:///FILE or postgresql://USER@HOST:PORT/DB (postgres:// too)"


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


BIND_ACCEPTED = (
    "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N (several: comma-separated; ports 1 to 65535)"
)


def _bind(value: Any) -> tuple[str, ...]:
    """Return gunicorn's listening addresses, each parsed as gunicorn parses it.

    Port 0 is refused: each worker binds a socket of its own (``reuse_port``),
    and each would be given a different free port.
    """
    if isinstance(value, tuple):
        return value
    addresses = tuple(part.strip() for part in str(value).split(","))
    for address in addresses:
        try:
            parsed = parse_address(address) if address else None
        except RuntimeError:
            parsed = None
        if parsed is None or parsed == "":
            raise ValueError(BIND_ACCEPTED)
        if isinstance(parsed, tuple) and not 1 <= parsed[1] <= 65535:
            raise ValueError(BIND_ACCEPTED)
        if isinstance(parsed, int) and parsed < 0:
            raise ValueError(BIND_ACCEPTED)
    return addresses


EVENT_WEIGHTS_ACCEPTED = (
    "comma-separated TYPE=POINTS pairs such as 'purchase=4,dislike=-3' "
    "(TYPE one of " + ", ".join(EVENT_TYPES) + "; points >= 0, a dislike's <= 0)"
)


def _event_weights(value: Any) -> EventWeights:
    if isinstance(value, EventWeights):
        return value
    try:
        return EventWeights.parse("" if value is None else str(value))
    except ValueError as exc:
        raise ValueError(f"{exc}; expected {EVENT_WEIGHTS_ACCEPTED}") from None


# -- the types of settings ---------------------------------------------------------

# The longest duration a setting takes, in its own unit (seconds, minutes or
# hours): the service waits on timers, sets socket timeouts and adds durations
# to dates, which overflow far below what a float holds (a socket timeout
# past about 292 years, a date past the year 9999). A million is 11 days of
# seconds, 1.9 years of minutes and 114 years of hours.
MAX_DURATION = 1_000_000
# The longest event retention: its cutoff, that many days before now, must be a date.
MAX_RETENTION_DAYS = 36_500

Count = Annotated[int, Field(ge=1), Accepts("an integer from 1 up")]
Port = Annotated[int, Field(ge=1, le=65535), Accepts("an integer from 1 to 65535")]
Seconds = Annotated[
    float,
    Field(gt=0, le=MAX_DURATION, allow_inf_nan=False),
    Accepts(f"a number > 0 and at most {MAX_DURATION}"),
]
# Redis counts a key's time to live in whole seconds.
WholeSeconds = Annotated[
    int,
    Field(ge=1, le=MAX_DURATION),
    Accepts(f"an integer from 1 to {MAX_DURATION}"),
]
SecondsOrNever = Annotated[
    float,
    Field(ge=0, le=MAX_DURATION, allow_inf_nan=False),
    Accepts(f"a number from 0 to {MAX_DURATION}"),
]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False), Accepts("a number >= 0")]
ShareOrOff = Annotated[
    float,
    Field(ge=0, le=1, allow_inf_nan=False),
    BeforeValidator(_off_is_zero),
    Accepts("a number from 0 to 1, or 0 for off"),
]
CountOrOff = Annotated[
    Annotated[int, Field(ge=1)] | None,
    BeforeValidator(_off_is_none),
    Accepts("an integer from 1 up, or 0 for off"),
]
DaysOrOff = Annotated[
    Annotated[int, Field(ge=1, le=MAX_RETENTION_DAYS)] | None,
    BeforeValidator(_off_is_none),
    Accepts(f"an integer from 1 to {MAX_RETENTION_DAYS}, or 0 for off"),
]
SecondsOrOff = Annotated[
    Annotated[float, Field(gt=0, le=MAX_DURATION, allow_inf_nan=False)] | None,
    BeforeValidator(_off_is_none),
    Accepts(f"a number > 0 and at most {MAX_DURATION}, or 0 for off"),
]
Switch = Annotated[bool, BeforeValidator(lowercase), Accepts("1 or 0 (true/false, yes/no, on/off)")]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1), Accepts("a non-empty text")
]
LogLevel = Annotated[str, BeforeValidator(_log_level), Accepts(f"one of {', '.join(LOG_LEVELS)}")]
OptionalText = Annotated[
    str | None, BeforeValidator(_empty_is_none), Accepts("a non-empty text, or empty for none")
]
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none), Accepts("a file path")]
ModelName = Annotated[
    str,
    BeforeValidator(_model_name),
    Accepts(accepted_model_names(allow_auto=True), own_message=True),
]
DatabaseUrl = Annotated[str | None, BeforeValidator(database_url), Accepts(DATABASE_URL_ACCEPTED)]
RedisUrl = Annotated[
    str | None, BeforeValidator(_redis_url), Accepts(REDIS_URL_ACCEPTED, own_message=True)
]
RateLimit = Annotated[str | None, BeforeValidator(_rate_limit), Accepts(RATE_LIMIT_ACCEPTED)]
EventWeightsValue = Annotated[
    EventWeights,
    BeforeValidator(_event_weights),
    Accepts(EVENT_WEIGHTS_ACCEPTED, own_message=True),
]
# Its messages name the bad entry without repeating it: it may be a key pasted by mistake.
ApiKeys = Annotated[
    KeyRing,
    BeforeValidator(_api_keys),
    Accepts("comma-separated ROLES:SHA256HEX[:RATE] entries", own_message=True),
]
TrainingMode = Annotated[
    Literal["thread", "worker"], BeforeValidator(lowercase), Accepts("one of thread, worker")
]
TrainingEngine = Annotated[
    Literal["local", "spark"], BeforeValidator(lowercase), Accepts("one of local, spark")
]
Bind = Annotated[tuple[str, ...], BeforeValidator(_bind), Accepts(BIND_ACCEPTED)]
