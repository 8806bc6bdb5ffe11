"""The evaluate and tune subcommands of recommendation_system.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.cli import evaluation as cli_evaluation
from recsys.cli.main import main
from recsys.evaluation.default_pipeline import run_pipeline
from recsys.evaluation.model_params import load_model_params
from recsys.models import MODELS

REPO = Path(__file__).resolve().parents[2]
RANKING_KEYS = ("precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage")


@pytest.fixture(scope="module")
def pipeline():
    result = run_pipeline()
    return lambda: result


@pytest.fixture
def run(pipeline, capsys):
    """Run the CLI; return (exit status, stdout, stderr)."""

    def run_cli(*argv):
        try:
            status = main(list(argv), pipeline=pipeline)
        except SystemExit as exit_:
            status = exit_.code
        out, err = capsys.readouterr()
        return status, out, err

    return run_cli


@pytest.fixture
def ratings_csv(tmp_path):
    """A small MovieLens ratings.csv: 12 users who each rate 6 of 10 movies over time."""
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 13):
        for step in range(6):
            movie = (user + step) % 10 + 1
            rating = 5.0 if movie <= 5 else 2.0
            lines.append(f"{user},{movie},{rating},{1000 * user + step}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_json_on_the_simulated_data_reports_every_model_and_metric(run, pipeline):
    status, out, _ = run("evaluate", "--json")
    report = json.loads(out)
    assert status == 0
    assert report["dataset"]["name"] == "simulated"
    assert report["dataset"]["rows"] == len(pipeline().feedback)
    assert report["protocol"]["name"] == "holdout"
    assert list(report["models"]) == ["popular", "svd", "als"]
    for scores in report["models"].values():
        assert all(0 <= scores[key] <= 1 for key in RANKING_KEYS)
        assert scores["fit_seconds"] > 0


def test_the_pipeline_prints_the_svd_rmse_and_mae_that_evaluate_reports(run, pipeline):
    svd = json.loads(run("evaluate", "--models", "svd", "--json")[1])["models"]["svd"]
    status, out, _ = run("rmse")
    assert status == 0
    assert f"SVD (Surprise)          {svd['rmse']:.4f}  {svd['mae']:.4f}" in out
    assert (pipeline().evaluation.svd.rmse, pipeline().evaluation.svd.mae) == (
        svd["rmse"],
        svd["mae"],
    )


def test_evaluate_names_the_blend_and_reports_the_rmse_the_pipeline_prints(run, pipeline):
    status, out, _ = run("evaluate", "--models", "svd,blend", "--json")
    models = json.loads(out)["models"]
    assert status == 0
    assert models["blend"]["rmse"] == pipeline().evaluation.blend.rmse
    assert models["blend"]["rmse"] < models["svd"]["rmse"]


def test_only_rating_models_report_rmse_and_mae(run):
    models = json.loads(run("evaluate", "--json")[1])["models"]
    assert {"rmse", "mae"} <= set(models["svd"])
    assert not {"rmse", "mae"} & set(models["popular"])
    assert not {"rmse", "mae"} & set(models["als"])


def test_personal_models_beat_popularity_on_the_simulated_data(run):
    models = json.loads(run("evaluate", "--json")[1])["models"]
    assert models["als"]["ndcg@10"] > models["popular"]["ndcg@10"]
    assert models["svd"]["ndcg@10"] > models["popular"]["ndcg@10"]


def test_popularity_and_popular_name_the_same_model(run):
    status, out, _ = run("evaluate", "--models", "popularity,popular", "--json")
    assert status == 0
    assert list(json.loads(out)["models"]) == ["popular"]


def test_the_table_has_one_row_per_model_with_every_metric(run):
    status, out, _ = run("evaluate", "--models", "popular,als", "--k", "5")
    lines = out.splitlines()
    assert status == 0
    assert lines[2].split() == [
        "model",
        "precision@5",
        "recall@5",
        "ndcg@5",
        "map@5",
        "hit_rate@5",
        "coverage",
        "novelty",
        "diversity",
        "popularity_bias",
        "fit_seconds",
        "recommend_seconds",
    ]
    assert [line.split()[0] for line in lines[3:5]] == ["popular", "als"]
    assert lines[5].startswith("by ndcg@5, best first: als ")
    assert lines[6:] == [
        "relevance: a test row is relevant when its rating is at least 4",
        "candidates: every product of the training rows except the user's own training "
        "products (whatever their rating); test products never seen in training cannot be "
        "ranked",
        "training input: every training row",
    ]


def test_all_models_compares_every_registered_model(run):
    status, out, _ = run("evaluate", "--models", "all", "--json")
    assert status == 0
    assert list(json.loads(out)["models"]) == list(MODELS)


def test_evaluate_reads_movielens_and_splits_by_time(run, ratings_csv):
    status, out, _ = run(
        "evaluate", "--data", str(ratings_csv), "--protocol", "time", "--leave-last", "2", "--json"
    )
    report = json.loads(out)
    assert status == 0
    assert report["dataset"]["format"] == "movielens-csv"
    assert report["protocol"]["leave_last"] == 2
    assert report["protocol"]["splits"][0]["test_rows"] == 12 * 2


def test_evaluate_splits_an_exported_interactions_log_by_its_iso_timestamps(run, tmp_path):
    # The shape of `flask export-interactions --with-timestamps`: UTC with a Z.
    lines = ["user_id,product_clicked,purchased,timestamp"]
    for user in range(1, 9):
        for step, product in enumerate((user % 4 + 1, user % 4 + 2, user % 4 + 3)):
            lines.append(f"{user},{product},{step % 2},2026-11-{10 + step}T10:0{user}:00Z")
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = run("evaluate", "--data", str(path), "--protocol", "time", "--json")
    assert status == 0, err
    split = json.loads(out)["protocol"]["splits"][0]
    assert (split["train_rows"], split["test_rows"]) == (8 * 2, 8)


def test_evaluate_cuts_movielens_once_in_time_and_repeats_over_earlier_windows(run, tmp_path):
    # 12 users rate one movie each per day, so every user is in every day.
    lines = ["userId,movieId,rating,timestamp"]
    for step in range(8):
        for user in range(1, 13):
            movie = (user + step) % 10 + 1
            lines.append(f"{user},{movie},{5.0 if movie <= 5 else 2.0},{86400 * step + user}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = run(
        "evaluate",
        "--data",
        str(path),
        "--protocol",
        "time-global",
        "--test-fraction",
        "0.25",
        "--repeats",
        "2",
        "--models",
        "popular,ease",
        "--json",
    )
    report = json.loads(out)
    assert status == 0, err
    assert report["protocol"]["name"] == "time-global"
    assert report["protocol"]["repeats"] == 2
    assert [split["window"] for split in report["protocol"]["splits"]] == [0, 1]
    assert [split["test_rows"] for split in report["protocol"]["splits"]] == [24, 24]
    assert set(report["intervals"]["ease"]) >= {"ndcg@10", "precision@10"}


def test_tune_on_the_time_split_reports_its_validation_rows(run, ratings_csv):
    status, out, err = run(
        "tune",
        "--data",
        str(ratings_csv),
        "--model",
        "ease",
        "--metric",
        "ndcg@5",
        "--protocol",
        "time-global",
        "--trials",
        "2",
        "--json",
    )
    result = json.loads(out)
    assert status == 0, err
    assert result["protocol"] == "time-global"
    assert result["validation_rows"] > 0
    assert "the test rows are never read" in result["method"]


def test_kfold_reports_the_number_of_folds(run, ratings_csv):
    status, out, _ = run(
        "evaluate", "--data", str(ratings_csv), "--protocol", "kfold", "--folds", "3", "--json"
    )
    report = json.loads(out)
    assert status == 0
    assert report["protocol"]["folds"] == 3
    assert len(report["protocol"]["splits"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--models", "svd,knn"], "unknown model 'knn'; expected one of"),
        (["evaluate", "--folds", "1"], "expected an integer >= 2, got '1'"),
        (["evaluate", "--k", "zero"], "expected an integer >= 1, got 'zero'"),
        (["evaluate", "--protocol", "time"], "the time protocol needs timestamps"),
        (["evaluate", "--data", "missing.csv"], "missing.csv: file not found"),
        (["tune", "--model", "als", "--metric", "rmse"], "als predicts no ratings"),
        (["tune", "--model", "svd", "--metric", "auc"], "unknown metric 'auc'"),
        (["evaluate", "--protocol", "time-global"], "the time protocol needs timestamps"),
        (["tune", "--model", "ease", "--protocol", "time-global"], "needs timestamps"),
        (["evaluate", "--protocol", "time_global"], "invalid choice: 'time_global'"),
        (["evaluate", "--repeats", "0"], "expected an integer >= 1, got '0'"),
        (["evaluate", "--test-fraction", "1.5"], "expected a number between 0 and 1, got 1.5"),
        (["evaluate", "--test-fraction", "half"], "expected a number between 0 and 1, got 'half'"),
        (["tune", "--model", "ease", "--protocol", "kfold"], "invalid choice: 'kfold'"),
    ],
)
def test_bad_arguments_exit_with_status_2_and_say_why(run, argv, message):
    status, _, err = run(*argv)
    assert status == 2
    assert message in err


def test_a_bad_data_file_is_named_with_its_line(run, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,2,4,5\n1,3,9,5\n")
    status, _, err = run("evaluate", "--data", str(path))
    assert status == 2
    assert f"{path}, line 3: rating must be a number from 0.5 to 5, got '9'" in err


def test_tune_saves_the_best_parameters_where_evaluate_can_use_them(run, tmp_path):
    params_path = tmp_path / "instance" / "model_params.json"
    status, out, _ = run(
        "tune", "--model", "als", "--trials", "2", "--save", str(params_path), "--json"
    )
    result = json.loads(out)
    assert status == 0
    assert load_model_params(params_path) == {"als": result["best_params"]}
    status, out, _ = run("evaluate", "--models", "als", "--params", str(params_path), "--json")
    assert status == 0
    assert "ndcg@10" in json.loads(out)["models"]["als"]


@pytest.mark.parametrize(
    ("existing", "target", "problem"),
    [
        ({"a-file": ""}, "a-file/params.json", "cannot write {target}: Not a directory"),
        ({"params.json": "{bad"}, "params.json", "{target}, line 1: not valid JSON"),
        (
            {"params.json": '{"svd": 3}'},
            "params.json",
            "{target}: expected an object mapping model names to parameter objects",
        ),
    ],
    ids=["a folder that is a file", "a damaged file", "not a parameter file"],
)
def test_tune_refuses_a_save_target_it_could_not_write_before_it_searches(
    run, tmp_path, monkeypatch, existing, target, problem
):
    for name, text in existing.items():
        (tmp_path / name).write_text(text)

    def search(*args, **kwargs):
        raise AssertionError("searched before checking where the result goes")

    monkeypatch.setattr(cli_evaluation, "tune", search)
    status, out, err = run(
        "tune", "--model", "svd", "--trials", "2", "--save", str(tmp_path / target)
    )
    assert (status, out) == (2, "")
    assert err.startswith("error: " + problem.format(target=tmp_path / target))
    assert err.count("\n") == 1


def test_tune_svd_on_rmse_prints_the_best_parameters(run):
    status, out, _ = run("tune", "--model", "svd", "--trials", "2")
    assert status == 0
    assert out.startswith("tuned svd on rmse (2 candidates, the defaults first")
    assert "best rmse:" in out


def test_tune_twice_with_the_same_seed_prints_the_same_result(run):
    first = run("tune", "--model", "svd", "--trials", "4", "--seed", "2", "--json")
    assert first[0] == 0
    assert run("tune", "--model", "svd", "--trials", "4", "--seed", "2", "--json") == first


def test_tune_save_gives_evaluate_the_parameters_chosen_on_validation(run, tmp_path):
    params_path = tmp_path / "model_params.json"
    status, out, _ = run(
        "tune", "--model", "svd", "--trials", "4", "--save", str(params_path), "--json"
    )
    result = json.loads(out)
    defaults = json.loads(run("evaluate", "--models", "svd", "--json")[1])["models"]["svd"]
    tuned = json.loads(
        run("evaluate", "--models", "svd", "--params", str(params_path), "--json")[1]
    )["models"]["svd"]
    assert status == 0
    assert result["best_score"] <= result["defaults_score"]  # on validation, not the test
    assert result["validation_rows"] > 0
    saved = json.loads(params_path.read_text())["svd"]
    assert saved == result["best_params"]
    default_params = next(t["params"] for t in result["trials"] if t["defaults"])
    # evaluate trains with what was saved: its test figure moves exactly when the choice did.
    assert (tuned["rmse"] == defaults["rmse"]) == (saved == default_params)


@pytest.mark.slow
def test_the_entry_point_prints_the_evaluate_json():
    completed = subprocess.run(
        [sys.executable, "recommendation_system.py", "evaluate", "--models", "popular", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert list(json.loads(completed.stdout)["models"]) == ["popular"]
