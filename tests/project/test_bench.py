"""The benchmarks: each explains itself, judges its targets and says so in its exit status."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

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


# The in-process benchmarks at their smallest sizes: they must reach their
# verdicts (a target may fail at such sizes), never stop on an error.
SMALLEST_RUNS = {
    "bench_filters.py": ["--users", "20", "--rounds", "1"],
    "bench_ingestion.py": ["--single", "5", "--batches", "1"],
    "bench_exposure.py": ["--requests", "30", "--rounds", "1"],
    "bench_gate.py": ["--users", "300", "--products", "30", "--models", "itemknn"],
    "bench_exploration.py": ["--requests", "200", "--users", "30", "--sync-every", "50"],
    "bench_realtime.py": ["--max-events", "60", "--http-check", "5"],
    "bench_lifecycle.py": [
        "--users",
        "300",
        "--products",
        "50",
        "--events",
        "3000",
        "--sample",
        "20",
        "--deletions",
        "1",
    ],
    # Reads the committed records: the capacity plan must still parse them.
    "bench_capacity.py": [],
}


@pytest.mark.slow
@pytest.mark.parametrize(("script", "arguments"), SMALLEST_RUNS.items())
def test_in_process_benchmarks_run_to_their_verdicts_at_their_smallest_sizes(script, arguments):
    run = subprocess.run(
        [sys.executable, f"bench/{script}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert f"Targets of {script}" in run.stdout


def fake_interpreter(folder: Path, failing: str) -> Path:
    """Return a venv folder whose python logs each benchmark it is asked to run.

    The benchmark named ``failing`` exits 1, as one whose target failed.
    """
    venv = folder / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\necho "$1" >> "{folder}/ran"\ncase "$1" in */{failing}.py) exit 1;; esac\n'
    )
    python.chmod(0o755)
    (venv / ".installed").touch()  # newer than the requirements: nothing to install
    wrk = folder / "bin" / "wrk"
    wrk.parent.mkdir()
    wrk.write_text("#!/bin/sh\n")
    wrk.chmod(0o755)
    return venv


@pytest.mark.parametrize("failing", ["bench_filters", "bench_serving", "bench_movielens", None])
def test_make_bench_runs_every_benchmark_and_fails_if_any_target_failed(tmp_path, failing):
    venv = fake_interpreter(tmp_path, failing or "none")
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n")
    made = subprocess.run(
        ["make", "-s", "bench", f"VENV={venv}", f"MOVIELENS={ratings}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MAKEFLAGS": "", "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
        timeout=60,
    )
    ran = [Path(line).stem for line in (tmp_path / "ran").read_text().split()]
    assert sorted(ran) == sorted(Path(name).stem for name in BENCHMARKS)
    if failing is None:
        assert made.returncode == 0, made.stdout + made.stderr
    else:
        assert made.returncode != 0
        assert f"a target failed in: {failing}" in made.stdout


@pytest.fixture(scope="module")
def verdicts_module():
    """Import bench/verdicts.py (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_verdicts", ROOT / "bench" / "verdicts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([True, True], 0),
        ([True, False], 1),
        ([False], 1),
        ([], 0),
    ],
)
def test_a_benchmark_exits_1_exactly_when_a_target_failed(
    verdicts_module, outcomes, status, capsys
):
    verdicts = verdicts_module.Verdicts("bench_x.py")
    for number, ok in enumerate(outcomes):
        verdicts.check(f"target {number}", "1.00", ok)
    verdicts.inform("a figure no target judges", "9.99")
    verdicts.not_run("a target of a larger run", "not measured")
    assert verdicts.finish() == status
    printed = capsys.readouterr().out
    assert printed.count("FAIL") == outcomes.count(False) + (status == 1)
    assert printed.count("PASS") == outcomes.count(True)


def test_a_recorded_run_holds_its_date_commit_output_and_verdicts(
    verdicts_module, tmp_path, capsys
):
    module = verdicts_module
    record = tmp_path / "docs" / "bench_x.md"
    verdicts = module.Verdicts("bench_x.py", record=record)
    print("figure: 42 req/s")
    verdicts.check("rate >= 40 req/s", "42", True)
    verdicts.check("p99 <= 10 ms", "12.0 ms", False)
    assert verdicts.finish() == 1
    written = record.read_text()
    assert f"{verdicts.started:%Y-%m-%d}" in written
    assert f"commit `{module.commit()}`" in written
    assert "```text\nfigure: 42 req/s\n```" in written
    assert "| rate >= 40 req/s | 42 | PASS |" in written
    assert "| p99 <= 10 ms | 12.0 ms | FAIL |" in written
    assert "figure: 42 req/s" in capsys.readouterr().out  # still shown as it ran


def test_the_capacity_plan_names_the_record_it_lacks(tmp_path):
    run = subprocess.run(
        [sys.executable, "bench/bench_capacity.py", "--records", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"bench_capacity.py: {tmp_path}/bench_scale.md is missing: run the benchmark that writes it"
    )


def test_the_readme_quality_table_is_the_recorded_benchmarks():
    """README.md's quality table is the one bench_quality.py printed in its record."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    record = (ROOT / "bench" / "records" / "bench_quality.md").read_text(encoding="utf-8")
    block = readme.split("<!-- quality:start -->\n", 1)[1].split("<!-- quality:end -->", 1)[0]
    table = [line for line in block.splitlines() if line.startswith("| ")]
    assert len(table) >= 3, "no quality table between the README's markers"
    recorded = record.split("headline table (README):\n", 1)[1].splitlines()[: len(table)]
    assert table == recorded
    assert "random holdout" in table[0] and "time" in table[0]
