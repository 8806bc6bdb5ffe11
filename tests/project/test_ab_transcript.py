"""The A/B page's simulated experiment is what the command prints today.

The simulation is seeded, so every figure repeats run to run but the two
latency columns, and the guardrail on latency that a neighbour's load can trip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_commands import commands

ROOT = Path(__file__).resolve().parents[2]
SHOWN = "simulate-ab --users 2000 --days 3"
# A variant's row ends with its p50 and p95 latency in milliseconds.
LATENCIES = re.compile(r"\s+\d+\.\d\s+\d+\.\d$")


def comparable(text: str, latency_tripped: bool) -> list[str]:
    """Return the lines of a report without what changes from run to run."""
    lines = [LATENCIES.sub(" <ms>", line.rstrip()) for line in text.strip().splitlines()]
    if latency_tripped:
        lines = [line for line in lines if not line.startswith(("Guardrails:", "Verdict:"))]
    return lines


@pytest.mark.slow
def test_the_simulated_experiment_on_the_ab_page_matches_a_fresh_run():
    [shown] = [c for c in commands(ROOT / "docs" / "ab-tests.md") if SHOWN in c.text]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    run = subprocess.run(
        [sys.executable, *shown.words[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    tripped = bool(re.search(r"^Guardrails: .*p95 latency", run.stdout, re.MULTILINE))
    assert comparable(shown.shown_output, tripped) == comparable(run.stdout, tripped)
