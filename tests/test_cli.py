"""The import-time pipeline and the command line of recommendation_system.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import BUNDLED_LOG, ROOT


def run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "recommendation_system.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_importing_builds_the_pipeline_in_memory_without_writing_files(tmp_path):
    code = (
        "import recommendation_system as r, json;"
        "print(json.dumps([len(r.interactions), len(r.top5), r.rmse, r.baseline_rmse,"
        " r.model.is_fitted, list(r.interactions.columns)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows, top, rmse, baseline, fitted, columns = json.loads(result.stdout)
    assert rows == len(pd.read_csv(BUNDLED_LOG))
    assert top == 5 and fitted and rmse < baseline
    assert columns == ["user_id", "product_clicked", "purchased"]
    assert list(tmp_path.iterdir()) == []


def test_running_the_script_prints_svd_and_baseline_rmse_with_svd_lower():
    result = run_cli()
    assert result.returncode == 0, result.stderr
    rows = {line[:24].strip(): line[24:].split() for line in result.stdout.splitlines()}
    svd_rmse = float(rows["SVD (Surprise)"][0])
    baseline_rmse = float(rows["global-mean baseline"][0])
    assert svd_rmse < baseline_rmse


@pytest.mark.parametrize("command", ["generate", "eda", "rmse"])
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_generate_writes_the_requested_log(tmp_path):
    out = tmp_path / "small.csv"
    result = run_cli(
        "generate", "--users", "7", "--products", "4", "--seed", "3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    log = pd.read_csv(out)
    assert list(log.columns) == ["user_id", "product_clicked", "purchased"]
    assert set(log["user_id"]) <= set(range(1, 8)) and set(log["product_clicked"]) <= {1, 2, 3, 4}


def test_generate_with_the_default_seed_reproduces_the_bundled_log(tmp_path):
    out = tmp_path / "again.csv"
    assert run_cli("generate", "--out", str(out)).returncode == 0
    assert out.read_bytes() == BUNDLED_LOG.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--users", "0"], "expected an integer >= 1, got '0'"),
        (["generate", "--seed", "x"], "expected an integer >= 0, got 'x'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_eda_reports_products_conversion_and_preferences():
    result = run_cli("eda", "--data", str(BUNDLED_LOG))
    assert result.returncode == 0, result.stderr
    for heading in (
        "Most-clicked products",
        "Purchase conversion overall",
        "Clicks per user",
        "top category",
        "affinity",
    ):
        assert heading in result.stdout


def test_eda_on_a_bad_file_names_file_and_line(write_csv):
    path = write_csv("user_id,product_clicked,purchased\n1,2,7\n")
    result = run_cli("eda", "--data", str(path))
    assert result.returncode == 2
    assert f"{path}, line 2: purchased must be 0 or 1" in result.stderr
