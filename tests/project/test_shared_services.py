"""Tests and benchmarks use only the services and databases they are given.

The machine's PostgreSQL and Redis are shared (other runs, other projects):
a test gets a schema or a key prefix of its own from tests/store_fixtures.py
and tests/redis_fixtures.py, and benchmarks read the same settings
(``RECSYS_TEST_POSTGRES_URL``, ``RECSYS_TEST_REDIS_URL``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import ROOT
from tests.redis_fixtures import RedisPlace
from tests.store_fixtures import jdbc_url

SOURCES = sorted(
    path
    for path in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
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


@pytest.mark.parametrize(
    ("postgres_url", "expected"),
    [
        (
            "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Drecsys_t1",
            "jdbc:postgresql://127.0.0.1:5432/test?user=postgres&currentSchema=recsys_t1",
        ),
        (
            "postgresql+psycopg://ci:s%40cret@db.internal:6543/recsys_ci"
            "?sslmode=require&options=-csearch_path%3Drecsys_t2",
            "jdbc:postgresql://db.internal:6543/recsys_ci"
            "?user=ci&password=s%40cret&sslmode=require&currentSchema=recsys_t2",
        ),
        ("postgresql://localhost/other", "jdbc:postgresql://localhost:5432/other?"),
    ],
)
def test_spark_reads_the_database_and_schema_the_tests_are_given(postgres_url, expected):
    assert jdbc_url(postgres_url) == expected


SKIPPING_TESTS = """
import pytest

def test_that_skips():
    pytest.skip("no such service here")

@pytest.mark.skipif(True, reason="no such data set here")
def test_that_is_skipped_by_a_mark():
    pass

def test_that_passes():
    pass
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        # A skip in the set-up (as a skipif mark's) counts as an error.
        ("1", "1 failed, 1 passed, 1 error"),
        ("", "1 passed, 2 skipped"),
    ],
)
def test_under_ci_a_skipped_test_fails_with_its_reason(tmp_path, ci, outcome):
    (tmp_path / "test_sample.py").write_text(SKIPPING_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "RECSYS_CI": ci, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert outcome in ran.stdout, ran.stdout
    if ci:
        assert "where no test may skip: no such service here" in ran.stdout
        assert "where no test may skip: no such data set here" in ran.stdout


def test_make_test_installs_the_spark_requirements_its_spark_tests_need(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # the core requirements are in; PySpark is not
    planned = subprocess.run(
        ["make", "-n", "test", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": ""},
        timeout=60,
    )
    assert planned.returncode == 0, planned.stderr
    assert f"{venv}/bin/python -m pip install --quiet -r requirements-spark.txt" in planned.stdout


@pytest.mark.parametrize(
    ("given", "through_proxy"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:40001/0"),
        ("redis://:s3cret@cache.internal:6380/5", "redis://:s3cret@127.0.0.1:40001/5"),
        ("redis://user:pw@10.0.0.7/3", "redis://user:pw@127.0.0.1:40001/3"),
    ],
)
def test_a_proxied_redis_is_the_same_database_the_tests_are_given(given, through_proxy):
    place = RedisPlace(given, "prefix", client=None)
    assert place.through(40001) == through_proxy
