"""API keys: roles, the configured digests, rates, and a constant-time check of a presented key.

The service never stores a key, only the SHA-256 of it. ``RECSYS_API_KEYS`` is
a comma-separated list of ``ROLES:DIGEST`` or ``ROLES:DIGEST:RATE`` entries,
``ROLES`` being one or more of ``read``, ``ingest`` and ``admin`` joined by
``+``, ``DIGEST`` the 64 hex digits of the key's SHA-256 and ``RATE`` the
key's own rate limit (``2000 per second``; without it, its role's default),
for example ``read:9f86...:2000 per second,ingest+read:2c26...,admin:fcde...``.
``admin`` implies the two other roles. Nothing here imports Flask;
``recsys.web.auth`` and ``recsys.web.limits`` apply it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from limits import parse_many

READ, INGEST, ADMIN = "read", "ingest", "admin"
ROLES: tuple[str, ...] = (READ, INGEST, ADMIN)
# What holding a role lets a key do: admin includes the two others.
_GRANTS = {READ: {READ}, INGEST: {INGEST}, ADMIN: {READ, INGEST, ADMIN}}

_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
ENTRY_FORMAT = (
    "ROLES:SHA256HEX or ROLES:SHA256HEX:RATE, ROLES being read, ingest or admin joined by +"
)
RATE_ACCEPTED = "a limit such as '2000 per second' or '50/second;1000/hour' (amounts from 1)"


def check_rate(text: str) -> str:
    """Return a rate limit in the syntax of the ``limits`` library, stripped.

    Raises:
        ValueError: Not such a limit, or an amount below 1 (``RATE_ACCEPTED``).
    """
    text = text.strip()
    try:
        items = parse_many(text)
    except ValueError:
        raise ValueError(RATE_ACCEPTED) from None
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(RATE_ACCEPTED)
    return text


def digest_of(key: str) -> bytes:
    """Return the SHA-256 of a key as presented (its UTF-8 bytes)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key: the SHA-256 of the key, the roles it holds, its own rate limit.

    Attributes:
        digest: The 32-byte SHA-256 of the key.
        roles: The roles as configured, in the order of ``ROLES``.
        rate: The key's own limit (``limits`` syntax), or None for its role's default.
    """

    digest: bytes
    roles: tuple[str, ...]
    rate: str | None = None

    @property
    def limit_key(self) -> str:
        """Name the key in rate-limit counters and logs: a prefix of its digest, never the key."""
        return f"key-{self.digest.hex()[:16]}"

    def allows(self, role: str) -> bool:
        """Return whether this key may call an endpoint that needs ``role``."""
        return any(role in _GRANTS[held] for held in self.roles)

    def config_entry(self) -> str:
        """Return the ``RECSYS_API_KEYS`` entry that configures this key."""
        entry = f"{'+'.join(self.roles)}:{self.digest.hex()}"
        return f"{entry}:{self.rate}" if self.rate else entry


@dataclass(frozen=True)
class KeyRing:
    """The configured keys; empty means the service runs open.

    Attributes:
        keys: Every configured key.
    """

    keys: tuple[ApiKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def authenticate(self, presented: str) -> ApiKey | None:
        """Return the configured key that ``presented`` is, or None.

        The presented key is hashed and compared with every configured digest
        by ``hmac.compare_digest``; the loop never stops early, so the time
        taken tells nothing about which digest, if any, matched.
        """
        digest = digest_of(presented)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key
        return found

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Read ``RECSYS_API_KEYS``: comma-separated ``ROLES:SHA256HEX`` entries.

        Raises:
            ValueError: One line naming the entry (by position) and what is
                wrong with it; it never repeats the entry, which could be a key
                pasted by mistake.
        """
        text = text.strip()
        if not text:
            return cls()
        entries = text.split(",")
        keys: list[ApiKey] = []
        for number, entry in enumerate(entries, start=1):
            where = f"entry {number} of {len(entries)}"
            key = _parse_entry(entry.strip(), where)
            if any(key.digest == seen.digest for seen in keys):
                raise ValueError(f"{where}: the same digest is configured twice")
            keys.append(key)
        return cls(tuple(keys))


def _parse_entry(entry: str, where: str) -> ApiKey:
    if not entry:
        raise ValueError(f"{where} is empty; expected {ENTRY_FORMAT}")
    roles_text, colon, rest = entry.partition(":")
    if not colon:
        raise ValueError(f"{where} has no ':'; expected {ENTRY_FORMAT}")
    digest_text, has_rate, rate_text = rest.partition(":")
    roles = roles_text.strip().split("+")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        # Role names are not secret; cap them all the same.
        shown = ", ".join(repr(r[:20]) for r in unknown)
        raise ValueError(f"{where}: unknown role {shown}; expected {ENTRY_FORMAT}")
    if len(set(roles)) != len(roles):
        raise ValueError(f"{where}: a role is given twice")
    digest_text = digest_text.strip()
    if not _DIGEST.fullmatch(digest_text):
        raise ValueError(
            f"{where}: the digest must be 64 hex digits, got {len(digest_text)} characters "
            "(configure the SHA-256 that `flask --app app create-key` prints, never the key)"
        )
    rate = None
    if has_rate:
        try:
            rate = check_rate(rate_text)
        except ValueError:
            raise ValueError(f"{where}: the rate must be {RATE_ACCEPTED}") from None
    return ApiKey(bytes.fromhex(digest_text), canonical_roles(roles), rate)


def canonical_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """Return the roles without repeats, in the order of ``ROLES``."""
    wanted = set(roles)
    return tuple(r for r in ROLES if r in wanted)


def new_key(roles: Iterable[str], rate: str | None = None) -> tuple[str, ApiKey]:
    """Make a random key (``secrets.token_urlsafe(32)``) holding ``roles``.

    Args:
        roles: Its roles.
        rate: Its own rate limit, or None for its role's default.

    Returns:
        The key, to hand to its user once, and its configuration (digest, roles, rate).

    Raises:
        ValueError: No role, a role outside ``ROLES``, or a rate that is not a limit.
    """
    roles = list(roles)
    chosen = canonical_roles(roles)
    if not chosen or set(roles) - set(ROLES):
        raise ValueError(f"roles must be one or more of {', '.join(ROLES)}")
    checked = check_rate(rate) if rate is not None else None
    key = secrets.token_urlsafe(32)
    return key, ApiKey(digest_of(key), chosen, checked)
