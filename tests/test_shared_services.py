"""Tests and benchmarks use only the services and databases they are given.

The machine's PostgreSQL and Redis are shared (other runs, other projects):
a test gets a schema or a key prefix of its own from tests/store_fixtures.py
and tests/redis_fixtures.py, and benchmarks read the same settings
(``RECSYS_TEST_POSTGRES_URL``, ``RECSYS_TEST_REDIS_URL``).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.builders import ROOT

SOURCES = sorted(
    path
    for path in [*(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    if path != Path(__file__)
)


def sources_matching(pattern: str) -> list[str]:
    """Return ``file:line`` of every line of a test or benchmark matching ``pattern``."""
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_test_or_benchmark_empties_a_redis_database():
    # A test's keys carry its prefix and are deleted by prefix; emptying a
    # database would delete whatever else shares the server.
    assert sources_matching(r"(?i)flushdb|flushall") == []


def test_no_test_or_benchmark_picks_a_redis_database_of_its_own():
    assert sources_matching(r"SELECT \{|\bREDIS_DB\b") == []


def test_benchmarks_read_the_services_from_the_settings_the_tests_use():
    assert sources_matching(r"RECSYS_BENCH_") == []
