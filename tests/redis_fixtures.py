"""Redis fixtures for the cache tests: the shared server, or one a test starts and kills.

``redis_url`` is the server named by ``RECSYS_TEST_REDIS_URL`` (default the
local one, 127.0.0.1:6379); ``cache_prefix`` gives each test a key prefix of
its own and deletes its keys afterwards, so tests never see each other's (or
anyone else's) keys. When no Redis answers the tests skip, unless
``RECSYS_REQUIRE_REDIS=1``, which makes them fail. ``own_redis`` starts a
redis-server of the test's own on a free port, without persistence, for
tests that stop it.

pytest loads this module as a plugin (see conftest.py): tests name the
fixtures, never import them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_redis_problem: list[str | None] = []


def redis_unavailable_reason() -> str | None:
    """Return why Redis cannot be used for tests, or None when it can (cached)."""
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


def require_redis() -> None:
    """Skip (or, with RECSYS_REQUIRE_REDIS=1, fail) when Redis is unreachable."""
    reason = redis_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("RECSYS_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_REDIS=1 makes Redis mandatory)")
    pytest.skip(f"{reason}; set RECSYS_REQUIRE_REDIS=1 to make this a failure")


@pytest.fixture
def redis_url():
    """Return the URL of the shared test Redis (skipping when none answers)."""
    require_redis()
    return REDIS_URL


@pytest.fixture
def cache_prefix(redis_url):
    """Yield a key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"recsys-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    """Yield (url, process) of a redis-server of this test's own; killed afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("RECSYS_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server not found (RECSYS_REQUIRE_REDIS=1 makes Redis mandatory)")
        pytest.skip("redis-server not found; set RECSYS_REQUIRE_REDIS=1 to make this a failure")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not start within 10 s"
            time.sleep(0.05)
    client.close()
    yield url, process
    process.kill()
    process.wait()
