"""The import-time pipeline and the command line of recommendation_system.py."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from recsys.cli.main import build_parser, main
from recsys.data.catalog import load_catalog
from recsys.evaluation.default_pipeline import PipelineResult, run_pipeline
from tests.builders import BUNDLED_LOG, ROOT


@functools.cache
def default_pipeline() -> PipelineResult:
    return run_pipeline()


def run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run recommendation_system.py's command line in this process, as the script would."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args), pipeline=default_pipeline)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 2
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


# What only some commands need: an import of the pipeline, or `--help`, never loads them.
HEAVY_MODULES = ("recsys.cli.main", "scipy.stats", "matplotlib", "recsys.runtime.wiring")


def loaded_heavy_modules(code: str, cwd) -> list[str]:
    """Return which of HEAVY_MODULES a fresh interpreter running ``code`` has imported."""
    probe = f"{code}\nimport sys; print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    last_line = result.stdout.rstrip("\n").rpartition("\n")[2]
    return [name for name in last_line.split(",") if name]


@pytest.mark.slow
def test_importing_the_pipeline_loads_no_command_line_charts_or_statistics(tmp_path):
    assert loaded_heavy_modules("import recommendation_system", tmp_path) == []


@pytest.mark.slow
def test_the_command_line_help_loads_no_charts_statistics_or_serving(tmp_path):
    code = (
        "import contextlib, io, runpy, sys\n"
        "sys.argv = ['recommendation_system.py', '--help']\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    runpy.run_path({str(ROOT / 'recommendation_system.py')!r}, run_name='__main__')"
    )
    assert loaded_heavy_modules(code, tmp_path) == ["recsys.cli.main"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_running_the_script_prints_svd_and_baseline_rmse_with_svd_lower():
    result = subprocess.run(
        [sys.executable, str(ROOT / "recommendation_system.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = {line[:24].strip(): line[24:].split() for line in result.stdout.splitlines()}
    svd_rmse = float(rows["SVD (Surprise)"][0])
    baseline_rmse = float(rows["global-mean baseline"][0])
    assert svd_rmse < baseline_rmse


COMMANDS = ["rmse", "generate", "eda", "evaluate", "tune"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_shows_its_default_in_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    options_text = capsys.readouterr().out.split("options:", 1)[1]
    # One block per option: it starts at "  -" and runs until the next one.
    blocks = [block.strip() for block in re.split(r"\n  (?=-)", options_text)]
    without_default = [
        " ".join(block.split())
        for block in blocks
        if block.startswith("-")
        and not block.startswith("-h, --help")
        and "(required)" not in block
        and "default" not in block
    ]
    assert without_default == []


def test_generate_writes_the_requested_log(tmp_path):
    out = tmp_path / "small.csv"
    result = run_cli(
        "generate", "--users", "7", "--products", "4", "--seed", "3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    log = pd.read_csv(out)
    assert list(log.columns) == ["user_id", "product_clicked", "purchased"]
    assert set(log["user_id"]) <= set(range(1, 8)) and set(log["product_clicked"]) <= {1, 2, 3, 4}


def test_generate_with_the_default_seed_reproduces_the_bundled_log_and_catalog(tmp_path):
    out = tmp_path / "interactions.csv"
    assert run_cli("generate", "--out", str(out)).returncode == 0
    assert out.read_bytes() == BUNDLED_LOG.read_bytes()
    catalog = tmp_path / "interactions.products.csv"
    assert catalog.read_bytes() == (ROOT / "products.csv").read_bytes()


def test_generate_without_out_is_refused_and_writes_nothing(tmp_path):
    result = run_cli("generate", cwd=tmp_path)
    assert result.returncode == 2
    assert "the following arguments are required: --out" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_generate_writes_the_logs_catalog_beside_it_named_after_the_log(tmp_path):
    out = tmp_path / "big.csv"
    result = run_cli("generate", "--users", "30", "--products", "25", "--out", str(out))
    assert result.returncode == 0, result.stderr
    catalog = load_catalog(tmp_path / "big.products.csv")
    assert list(catalog.columns) == ["product_id", "name", "category", "price"]
    assert catalog["product_id"].tolist() == list(range(1, 26))
    assert set(pd.read_csv(out)["product_clicked"]) <= set(catalog["product_id"])
    assert f"to {out}" in result.stdout and "big.products.csv" in result.stdout


def test_generate_beside_the_bundled_pair_leaves_its_catalog_alone(tmp_path):
    bundled = tmp_path / "products.csv"
    bundled.write_bytes((ROOT / "products.csv").read_bytes())
    result = run_cli("generate", "--users", "5", "--seed", "7", "--out", str(tmp_path / "big.csv"))
    assert result.returncode == 0, result.stderr
    assert bundled.read_bytes() == (ROOT / "products.csv").read_bytes()
    assert (tmp_path / "big.products.csv").is_file()


def test_eda_of_a_generated_log_names_products_from_its_own_catalog(tmp_path):
    (tmp_path / "products.csv").write_text("product_id,name,category,price\n1,Bundled,Toys,1\n")
    assert run_cli("generate", "--users", "5", "--out", str(tmp_path / "big.csv")).returncode == 0
    own = load_catalog(tmp_path / "big.products.csv")
    result = run_cli("eda", "--data", str(tmp_path / "big.csv"))
    assert result.returncode == 0, result.stderr
    assert "Bundled" not in result.stdout
    assert any(name in result.stdout for name in own["name"])


@pytest.mark.parametrize("existing", ["big.csv", "big.products.csv"])
def test_generate_refuses_to_overwrite_a_file_without_force(tmp_path, existing):
    (tmp_path / existing).write_text("keep me\n")
    result = run_cli("generate", "--out", str(tmp_path / "big.csv"))
    assert result.returncode == 2
    assert f"{tmp_path / existing} exists; pass --force to overwrite it" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text() == "keep me\n"


def test_generate_with_force_overwrites(tmp_path):
    out = tmp_path / "big.csv"
    out.write_text("old\n")
    result = run_cli("generate", "--users", "3", "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("user_id,product_clicked,purchased\n")


def test_generate_to_standard_output_writes_no_catalog_unless_asked(tmp_path):
    result = run_cli("generate", "--users", "3", "--out", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("user_id,product_clicked,purchased\n")
    assert list(tmp_path.iterdir()) == []
    asked = run_cli("generate", "--users", "3", "--out", "-", "--catalog", "shop.csv", cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == result.stdout
    assert len(load_catalog(tmp_path / "shop.csv")) == 20


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


def test_eda_names_products_from_the_catalog_beside_the_log(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,product_clicked,purchased\n1,25,1\n2,25,0\n2,3,0\n")
    (tmp_path / "products.csv").write_text(
        "product_id,name,category,price\n3,Red Kite,Toys,4.5\n25,Blue Boat,Toys,9\n"
    )
    result = run_cli("eda", "--data", str(tmp_path / "log.csv"))
    assert result.returncode == 0, result.stderr
    assert "Blue Boat" in result.stdout and "Red Kite" in result.stdout


def test_eda_without_a_catalog_shows_products_by_id_and_invents_no_names(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,product_clicked,purchased\n1,25,1\n2,25,0\n2,1,0\n")
    result = run_cli("eda", "--data", str(log))
    assert result.returncode == 0, result.stderr
    assert "Gray Headphones" not in result.stdout  # product 1 of the default catalog
    assert "NaN" not in result.stdout
    assert "no catalog" in result.stdout


def test_eda_takes_the_catalog_given_with_catalog(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,product_clicked,purchased\n1,2,1\n")
    (tmp_path / "products.csv").write_text("product_id,name,category,price\n2,Beside,Toys,1\n")
    chosen = tmp_path / "chosen.csv"
    chosen.write_text("product_id,name,category,price\n2,Chosen,Toys,1\n")
    result = run_cli("eda", "--data", str(log), "--catalog", str(chosen))
    assert result.returncode == 0, result.stderr
    assert "Chosen" in result.stdout and "Beside" not in result.stdout


def test_eda_on_a_bad_file_names_file_and_line(write_csv):
    path = write_csv("user_id,product_clicked,purchased\n1,2,7\n")
    result = run_cli("eda", "--data", str(path))
    assert result.returncode == 2
    assert f"{path}, line 2: purchased must be 0 or 1" in result.stderr


def test_train_into_a_model_dir_goes_through_the_quality_gate(tmp_path, capsys):
    models = tmp_path / "models"
    args = ["train", "--data", str(BUNDLED_LOG), "--model-dir", str(models), "--model", "ease"]
    assert main(args) == 0
    assert "quality gate accepted: no live version to compare with" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "quality gate accepted: " in out and "too few to compare" in out
    assert len(list(models.glob("v*"))) == 2


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b"user_id,product_clicked,purchased\n1,2,0\n1,\xff,0\n", 3, "not UTF-8 text"),
        (b"user_id,product_clicked,purchased," + b"x" * 200_000 + b"\n1,2,0\n", 1, "unexpected"),
        # Neither a MovieLens file nor a log: each command names the header it wants.
        (b"\0" * 200_000, 1, "user_id"),
    ],
    ids=["bad UTF-8 on line 3", "a 200,000-character header", "NUL bytes, no newline"],
)
@pytest.mark.parametrize("command", ["train", "eda", "evaluate"])
def test_a_bad_log_is_one_error_line_naming_file_and_line(
    tmp_path, command, content, line, problem
):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    extra = ["--model-dir", str(tmp_path / "models"), "--model", "popular"]
    result = run_cli(command, "--data", str(path), *(extra if command == "train" else []))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path}, line {line}: ")
    assert problem in result.stderr


def test_train_reads_a_log_with_event_types_as_the_other_commands_do(tmp_path):
    path = tmp_path / "typed.csv"
    path.write_text(
        "user_id,product_clicked,purchased,type,value\n"
        + "".join(f"{u},{p},0,view,\n{u},{p + 1},,rating,4\n" for u in range(1, 30) for p in (1, 3))
    )
    result = run_cli(
        "train", "--data", str(path), "--model-dir", str(tmp_path / "m"), "--model", "popular"
    )
    assert result.returncode == 0, result.stderr
