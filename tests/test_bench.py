"""The benchmarks: each explains itself, judges its targets and says so in its exit status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.builders import ROOT

BENCHMARKS = sorted(path.name for path in (ROOT / "bench").glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS)
def test_every_benchmark_prints_its_usage(script):
    shown = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: ")
