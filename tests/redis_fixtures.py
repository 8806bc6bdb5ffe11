"""Redis fixtures for the rate-limit and cache tests: the shared server, and one a test kills.

``redis_url`` points at the Redis named by ``RECSYS_TEST_REDIS_URL`` (default
the local ``redis://127.0.0.1:6379/0``) and gives each test a key prefix of its
own, whose keys it deletes afterwards. ``own_redis`` starts a private
``redis-server`` on a free port, so that a test can stop it. When no Redis
answers (or ``redis-server`` is not installed) these tests skip, unless
``RECSYS_REQUIRE_REDIS=1`` (set by .ci/run), which makes them fail.

pytest loads this module as a plugin (see conftest.py): tests name the
fixtures, never import them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass

import pytest
import redis

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_redis_problem: list[str | None] = []


def redis_unavailable_reason() -> str | None:
    """Return why the shared Redis cannot be used for tests, or None when it can (cached)."""
    if not _redis_problem:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
            _redis_problem.append(None)
        except redis.RedisError as exc:
            _redis_problem.append(f"Redis at {REDIS_URL} unreachable: {exc}")
        finally:
            client.close()
    return _redis_problem[0]


def skip_or_fail(reason: str) -> None:
    """Skip the test (or, with RECSYS_REQUIRE_REDIS=1, fail it) for ``reason``."""
    if os.environ.get("RECSYS_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_REDIS=1 makes Redis mandatory)")
    pytest.skip(f"{reason}; set RECSYS_REQUIRE_REDIS=1 to make this a failure")


@dataclass(frozen=True)
class RedisPlace:
    """Where a test keeps its rate-limit counters.

    Attributes:
        url: The server.
        prefix: A key prefix no other test uses (``RATELIMIT_KEY_PREFIX``).
        client: A client of the server, to look at the keys.
    """

    url: str
    prefix: str
    client: redis.Redis

    def keys(self) -> list[str]:
        """Return the test's keys (decoded)."""
        return [k.decode() for k in self.client.scan_iter(match=f"*{self.prefix}*")]

    @property
    def address(self) -> tuple[str, int]:
        """Return the server's host and port."""
        parts = urllib.parse.urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    def through(self, port: int, host: str = "127.0.0.1") -> str:
        """Return the URL of the same database reached at another address (a proxy's)."""
        parts = urllib.parse.urlsplit(self.url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def redis_url():
    """Yield the shared Redis with a fresh key prefix; the prefix's keys are deleted afterwards."""
    reason = redis_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    client = redis.Redis.from_url(REDIS_URL)
    place = RedisPlace(REDIS_URL, f"recsys-test-{uuid.uuid4().hex[:12]}", client)
    yield place
    for key in client.scan_iter(match=f"*{place.prefix}*"):
        client.delete(key)
    client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` child process on a free loopback port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server and wait until it answers (10 s at most)."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        message = f"redis-server on port {self.port} did not start"
                        raise RuntimeError(message) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (an outage, not a shutdown) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1)


@pytest.fixture
def own_redis():
    """Yield a running RedisServer of the test's own; it is killed afterwards."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cache_prefix(redis_url):
    """Return a key prefix of this test's own for the service's cache (CACHE_KEY_PREFIX).

    It contains ``redis_url``'s prefix, so its keys are deleted with the others.
    """
    return f"{redis_url.prefix}:"
