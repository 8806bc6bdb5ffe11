"""Whether a service without API keys may listen where it is asked to.

Without keys every endpoint is open, retraining included; that is fine on the
loopback interface (a developer's laptop) and refused anywhere else unless the
operator says so (``RECSYS_ALLOW_OPEN=1``). ``python app.py`` and gunicorn's
``on_starting`` hook ask ``open_bind_refusal`` before they listen.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def bind_host(address: str) -> str | None:
    """Return the host part of a listening address, or None for a Unix socket.

    Accepts what ``python app.py --host`` and gunicorn's ``bind`` take:
    ``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` and ``fd://N``.
    """
    address = address.strip()
    if address.startswith("unix:"):
        return None
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address
    if address.count(":") == 1:
        return address.partition(":")[0]
    return address  # a bare host, an unbracketed IPv6 address, or fd://N


def is_loopback(address: str) -> bool:
    """Return whether only this machine can reach ``address`` (loopback or a Unix socket).

    An empty host (``:8000``) means every interface, and a name other than
    ``localhost`` may resolve anywhere, so both count as reachable from outside.
    """
    host = bind_host(address)
    if host is None:
        return True
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_bind_refusal(
    keys_configured: bool, allow_open: bool, addresses: Iterable[str]
) -> str | None:
    """Return why the service must not listen on ``addresses``, or None when it may.

    Args:
        keys_configured: Whether ``RECSYS_API_KEYS`` names at least one key.
        allow_open: ``RECSYS_ALLOW_OPEN``: serve without keys on any address.
        addresses: Where it would listen (a host, or gunicorn's bind addresses).

    Returns:
        One line for the operator, or None.
    """
    if keys_configured or allow_open:
        return None
    exposed = [a for a in addresses if not is_loopback(a)]
    if not exposed:
        return None
    return (
        f"no API keys are configured (RECSYS_API_KEYS), so every endpoint would be open on "
        f"{', '.join(exposed)}, which is not a loopback address: create keys with "
        "`flask --app app create-key --role ROLE`, or set RECSYS_ALLOW_OPEN=1 to serve "
        "openly on purpose"
    )


def warn_if_open(keys_configured: bool, addresses: Iterable[str]) -> None:
    """Log, once at start, that the service answers every request without a key."""
    if not keys_configured:
        logger.warning(
            "no API keys are configured (RECSYS_API_KEYS): every endpoint is open to anyone "
            "who can reach %s",
            ", ".join(addresses),
        )
