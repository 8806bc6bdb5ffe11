"""Retraining and model persistence as a running service sees them."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from recsys.online.service import ServingModel
from recsys.store.job_queue import JobState, TrainingJob
from tests.builders import ROOT, kill_mid_write, runtime_of

PROJECT = Path(__file__).resolve().parents[2]


def retrain(client) -> dict:
    """Start a retrain over HTTP, wait for it, and return the finished job."""
    response = client.post("/admin/retrain")
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["job_id"]
    runtime_of(client.application).jobs.wait(job_id, timeout=60)
    return client.get(f"/admin/jobs/{job_id}").get_json()


def gate_training(monkeypatch, app) -> threading.Event:
    """Make the app's training wait until the returned event is set."""
    runtime = runtime_of(app)
    real_train = runtime.train
    gate = threading.Event()

    def gated_train():
        assert gate.wait(30), "test never opened the gate"
        return real_train()

    monkeypatch.setattr(runtime, "train", gated_train)
    return gate


def test_a_restarted_app_serves_the_same_version_without_training(any_app_factory):
    first = any_app_factory()
    assert runtime_of(first).init_report.trained, "an empty artifact directory means one training"
    version = first.test_client().get("/model").get_json()["version"]
    answer = first.test_client().get("/recommend?user_id=1").get_json()

    second = any_app_factory()
    assert not runtime_of(second).init_report.trained
    assert runtime_of(second).registry.versions() == [version]
    assert second.test_client().get("/recommend?user_id=1").get_json() == answer


def test_a_restart_after_a_retrain_serves_the_retrained_version(app_factory):
    job = retrain(app_factory().test_client())
    assert job["state"] == "succeeded"
    restarted = app_factory()
    assert not runtime_of(restarted).init_report.trained
    assert restarted.test_client().get("/model").get_json()["version"] == job["version"]


def test_the_bundled_log_fills_an_empty_store_once(app_factory):
    first = app_factory()
    counts = runtime_of(first).store.counts()
    bundled_rows = len((PROJECT / "interactions.csv").read_text().splitlines()) - 1
    assert (counts.products, counts.users, counts.interactions) == (20, 100, bundled_rows)
    app_factory()
    assert runtime_of(first).store.counts() == counts


def test_retrain_returns_202_and_the_job_reports_its_new_version(app_factory, monkeypatch):
    app = app_factory()
    client = app.test_client()
    old_version = client.get("/model").get_json()["version"]
    gate = gate_training(monkeypatch, app)
    response = client.post("/admin/retrain")
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == body["status_url"]
    running = client.get(body["status_url"]).get_json()
    assert running["state"] in ("queued", "running")
    assert running["version"] is None
    gate.set()
    runtime_of(app).jobs.wait(body["job_id"], timeout=60)
    done = client.get(body["status_url"]).get_json()
    assert done["state"] == "succeeded"
    assert done["version"] != old_version
    assert done["duration_seconds"] >= 0
    assert {"rmse", "mae", "ndcg@10", "hit_rate@10", "coverage"} <= set(done["metrics"])
    assert client.get("/model").get_json()["version"] == done["version"]


def test_a_second_retrain_while_one_runs_is_a_409(app_factory, monkeypatch):
    app = app_factory()
    client = app.test_client()
    gate = gate_training(monkeypatch, app)
    first = client.post("/admin/retrain").get_json()["job_id"]
    second = client.post("/admin/retrain")
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "retrain_in_progress"
    assert first in second.get_json()["error"]["message"]
    gate.set()
    runtime_of(app).jobs.wait(first, timeout=60)
    assert client.post("/admin/retrain").status_code == 202, "free again once the job ended"


def test_a_job_failed_by_the_database_tells_no_sql_and_no_host(app_factory, monkeypatch, caplog):
    app = app_factory()
    client = app.test_client()
    secret = "SELECT * FROM interactions -- host db.internal.example port 5432"

    def database_down():
        raise sa.exc.OperationalError(secret, {}, Exception("connection to db.internal refused"))

    monkeypatch.setattr(runtime_of(app), "train", database_down)
    job = retrain(client)
    assert job["error"]["code"] == "store_unavailable"
    assert "db.internal" not in str(job) and "SELECT" not in str(job)
    assert any("db.internal" in r.getMessage() or r.exc_info for r in caplog.records)


def test_a_failed_retrain_is_reported_and_the_live_model_stays(app_factory, monkeypatch):
    app = app_factory()
    client = app.test_client()
    live = client.get("/model").get_json()["version"]

    def broken_train():
        raise RuntimeError("disk full")

    monkeypatch.setattr(runtime_of(app), "train", broken_train)
    job = retrain(client)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "training_failed"
    assert "disk full" not in job["error"]["message"], "details go to the log only"
    assert job["version"] is None
    assert client.get("/model").get_json()["version"] == live
    assert client.post("/admin/retrain").status_code == 202


def test_an_unknown_job_is_a_json_404(app_factory):
    response = app_factory().test_client().get("/admin/jobs/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "job_not_found"


def test_model_reports_the_live_version_and_how_it_was_made(app_factory):
    app = app_factory()
    body = app.test_client().get("/model").get_json()
    meta = runtime_of(app).registry.load_latest().metadata
    assert body["version"] == meta.version
    assert body["model_type"] == "svd"
    assert body["params"]["n_factors"] == meta.params["n_factors"]
    assert body["trained_at"].endswith("Z")
    assert body["data_fingerprint"].startswith("sha256:")
    assert body["metrics"]["test_users"] > 0
    assert body["training"]["interactions"] == runtime_of(app).store.counts().interactions


@pytest.mark.slow
def test_requests_during_retrains_see_no_error_and_only_whole_versions(app_factory):
    app = app_factory()
    runtime = runtime_of(app)
    client = app.test_client()
    seen: list[tuple[int, dict]] = []
    stop = threading.Event()

    def read_continuously() -> None:
        reader = app.test_client()
        while not stop.is_set():
            response = reader.get("/recommend?user_id=1&n=5")
            seen.append((response.status_code, response.get_json()))

    thread = threading.Thread(target=read_continuously)
    thread.start()
    try:
        for round_ in range(3):
            # Other users' clicks change the model; user 1's purchases stay as they are.
            clicks = [
                {"user_id": 60 + u, "product_id": 1 + (u + round_ * 7) % 20, "purchased": 0}
                for u in range(40)
            ]
            assert client.post("/interactions", json=clicks).status_code == 201
            assert retrain(client)["state"] == "succeeded"
    finally:
        stop.set()
        thread.join()

    assert seen, "the reader made no request"
    assert [status for status, _ in seen if status != 200] == []
    versions = {body["model_version"] for _, body in seen}
    assert len(versions) >= 2, "the reader should have seen at least one swap"
    history = runtime.store.user_history(1)
    for version in versions:
        served = ServingModel.from_artifact(runtime.registry.load(version), None)
        profile = history.profile(served.weights)
        ranked = served.model.rank_profile(profile, 5, exclude=history.purchased)
        expected = [
            [int(p), round(float(s), 4)]
            for p, s in zip(ranked.product_ids, ranked.scores, strict=True)
        ]
        answers = [body for _, body in seen if body["model_version"] == version]
        for body in answers:
            got = [[i["product_id"], i["score"]] for i in body["recommendations"]]
            assert got == expected, f"an answer mixed version {version} with another"


def test_cli_train_publishes_a_new_version(app_factory):
    app = app_factory()
    before = runtime_of(app).registry.versions()
    result = app.test_cli_runner().invoke(args=["train"])
    assert result.exit_code == 0, result.output
    after = runtime_of(app).registry.versions()
    assert len(after) == len(before) + 1
    assert f"published {after[0]} (svd)" in result.output
    assert "rmse:" in result.output


def test_cli_export_then_import_doubles_the_log_only_when_asked_to_append(app_factory, tmp_path):
    app = app_factory()
    store = runtime_of(app).store
    rows = store.counts().interactions
    path = tmp_path / "export.csv"
    runner = app.test_cli_runner()
    exported = runner.invoke(args=["export-interactions", str(path)])
    assert exported.exit_code == 0, exported.output
    assert path.read_text() == (PROJECT / "interactions.csv").read_text()
    # The same bytes as the log init loaded: recognised, and refused unless meant.
    refused = runner.invoke(args=["import-interactions", str(path)])
    assert refused.exit_code == 1
    assert "this file was imported on" in refused.output
    assert store.counts().interactions == rows
    imported = runner.invoke(args=["import-interactions", str(path), "--append"])
    assert imported.exit_code == 0, imported.output
    assert f"imported {rows} interactions" in imported.output
    assert store.counts().interactions == 2 * rows


def test_cli_export_refuses_to_overwrite_a_file_without_force(app_factory, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("keep me\n")
    runner = app_factory().test_cli_runner()
    refused = runner.invoke(args=["export-interactions", str(path)])
    assert refused.exit_code == 2
    assert f"{path} exists; pass --force to overwrite it" in refused.output
    assert path.read_text() == "keep me\n"
    forced = runner.invoke(args=["export-interactions", str(path), "--force"])
    assert forced.exit_code == 0, forced.output
    assert path.read_text() == (PROJECT / "interactions.csv").read_text()


def test_an_export_that_fails_part_way_leaves_the_old_file_whole(app_factory, tmp_path):
    app = app_factory()
    store = runtime_of(app).store
    path = tmp_path / "exports" / "export.csv"
    path.parent.mkdir()
    path.write_text("the last good export\n")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE interactions")
    result = app.test_cli_runner().invoke(args=["export-interactions", str(path), "--force"])
    assert result.exit_code == 2
    assert "no such table: interactions" in result.output
    assert path.read_text() == "the last good export\n"
    assert [p.name for p in path.parent.iterdir()] == ["export.csv"]


def test_the_experiment_command_group_says_what_it_does(app_factory):
    runner = app_factory().test_cli_runner()
    listing = runner.invoke(args=["--help"])
    line = next(row for row in listing.output.splitlines() if row.strip().startswith("experiment"))
    assert "A/B tests" in line
    group = runner.invoke(args=["experiment", "--help"])
    assert "Create, list, start, stop and report A/B tests" in group.output


def test_cli_import_of_a_bad_file_names_the_line_and_imports_nothing(app_factory, tmp_path):
    app = app_factory()
    rows = runtime_of(app).store.counts().interactions
    path = tmp_path / "bad.csv"
    path.write_text("user_id,product_clicked,purchased\n1,2,0\n1,2,maybe\n")
    result = app.test_cli_runner().invoke(args=["import-interactions", str(path)])
    assert result.exit_code == 1
    assert f"{path}, line 3: purchased must be 0 or 1" in result.output
    assert "nothing was imported" in result.output
    assert runtime_of(app).store.counts().interactions == rows


def test_only_the_last_n_versions_are_kept(app_factory):
    app = app_factory(KEEP_MODEL_VERSIONS=2)
    client = app.test_client()
    jobs = [retrain(client) for _ in range(3)]
    assert runtime_of(app).registry.versions() == [jobs[2]["version"], jobs[1]["version"]]


def test_a_corrupt_newest_artifact_is_skipped_at_start_with_a_warning(app_factory, caplog):
    app = app_factory()
    good = runtime_of(app).registry.versions()[0]
    bad = retrain(app.test_client())["version"]
    (Path(runtime_of(app).registry.root) / bad / "arrays.npz").write_bytes(b"\0" * 100)
    with caplog.at_level(logging.WARNING, logger="recsys.store.artifacts"):
        restarted = app_factory()
    assert restarted.test_client().get("/model").get_json()["version"] == good
    assert not runtime_of(restarted).init_report.trained
    assert any(bad in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.slow
def test_a_trainer_killed_mid_write_leaves_the_previous_model_served(app_factory, tmp_path):
    app = app_factory()
    previous = runtime_of(app).registry.versions()
    status = kill_mid_write(
        'from flask.cli import main\nsys.argv = ["flask", "--app", "app", "train"]\nmain()\n',
        paths=[str(ROOT)],
        env={
            "RECSYS_DATABASE_URL": app_factory.database_url,
            "RECSYS_MODEL_DIR": str(app_factory.model_dir),
        },
    )
    assert status == -9
    model_dir = Path(app_factory.model_dir)
    assert any(p.name.startswith(".tmp-") for p in model_dir.iterdir()), "killed mid-write"

    restarted = app_factory()
    assert runtime_of(restarted).registry.versions() == previous
    assert not runtime_of(restarted).init_report.trained
    answer = restarted.test_client().get("/recommend?user_id=1").get_json()
    assert answer["model_version"] == previous[0]
    assert len(answer["recommendations"]) == 5


def test_changing_the_configured_model_serves_its_own_newest_artifact(app_factory):
    svd_version = app_factory().test_client().get("/model").get_json()["version"]
    popular_app = app_factory(MODEL="popular")
    assert runtime_of(popular_app).init_report.trained, "no popular artifact existed yet"
    assert popular_app.test_client().get("/model").get_json()["model_type"] == "popular"
    back = app_factory(MODEL="svd")
    assert not runtime_of(back).init_report.trained
    assert back.test_client().get("/model").get_json()["version"] == svd_version


def test_a_server_picks_up_a_version_another_process_published(app_factory):
    worker_a, worker_b = app_factory(), app_factory()
    before = worker_b.test_client().get("/model").get_json()["version"]
    job = retrain(worker_a.test_client())
    assert worker_b.test_client().get("/model").get_json()["version"] == before
    assert runtime_of(worker_b).refresh() is True
    assert worker_b.test_client().get("/model").get_json()["version"] == job["version"]
    assert runtime_of(worker_b).refresh() is False


def test_the_refresh_poller_serves_a_version_published_by_flask_train(app_factory):
    server = app_factory(MODEL_REFRESH_SECONDS=0.05)
    cli_app = app_factory(MODEL_REFRESH_SECONDS=0)
    result = cli_app.test_cli_runner().invoke(args=["train"])
    assert result.exit_code == 0, result.output
    published = runtime_of(cli_app).registry.versions()[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.test_client().get("/model").get_json()["version"] == published:
            break
        time.sleep(0.05)
    assert server.test_client().get("/model").get_json()["version"] == published


def test_a_slow_refresh_never_replaces_a_newer_live_version(app_factory):
    app = app_factory()
    runtime = runtime_of(app)
    older = runtime.registry.versions()[0]
    newest = retrain(app.test_client())["version"]
    runtime.service.serve(runtime.registry.load(older), only_if_newer=True)
    assert runtime.service.metadata.version == newest


def test_one_retrain_at_a_time_across_processes_sharing_the_artifacts(app_factory, monkeypatch):
    worker_a, worker_b = app_factory(), app_factory()
    gate = gate_training(monkeypatch, worker_a)
    job_id = worker_a.test_client().post("/admin/retrain").get_json()["job_id"]
    refused = worker_b.test_client().post("/admin/retrain")
    assert refused.status_code == 409
    assert "another process is still training" in refused.get_json()["error"]["message"]
    cli = worker_b.test_cli_runner().invoke(args=["train"])
    assert cli.exit_code == 1
    assert "another process is still training" in cli.output
    gate.set()
    runtime_of(worker_a).jobs.wait(job_id, timeout=60)
    assert worker_b.test_client().post("/admin/retrain").status_code == 202


def test_another_worker_and_a_restarted_server_report_a_job(app_factory):
    worker_a, worker_b = app_factory(), app_factory()
    job = retrain(worker_a.test_client())
    seen_by_b = worker_b.test_client().get(f"/admin/jobs/{job['job_id']}").get_json()
    assert seen_by_b == job
    restarted = app_factory()
    assert restarted.test_client().get(f"/admin/jobs/{job['job_id']}").get_json() == job


def test_a_job_left_running_by_a_dead_process_is_closed_at_start(app_factory):
    app = app_factory()
    now = datetime.now(UTC)
    runtime_of(app).job_queue.save(
        TrainingJob("deadbeef", JobState.RUNNING, "api", requested_at=now, started_at=now)
    )
    restarted = app_factory()
    job = restarted.test_client().get("/admin/jobs/deadbeef").get_json()
    assert job["state"] == "failed"
    assert job["error"] == {"code": "interrupted", "message": "the training process ended"}


def test_refresh_ignores_a_damaged_new_version_and_keeps_serving(app_factory, caplog):
    worker_a, worker_b = app_factory(), app_factory()
    live = worker_b.test_client().get("/model").get_json()["version"]
    damaged = retrain(worker_a.test_client())["version"]
    (Path(runtime_of(worker_a).registry.root) / damaged / "arrays.npz").write_bytes(b"broken")
    with caplog.at_level(logging.WARNING, logger="recsys.runtime.refresh"):
        assert runtime_of(worker_b).refresh() is False
        assert runtime_of(worker_b).refresh() is False
    assert worker_b.test_client().get("/model").get_json()["version"] == live
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(damaged in r.getMessage() for r in warnings) == 1


def test_the_first_model_reports_the_pipelines_rmse_for_the_bundled_data(app_factory):
    from recsys.evaluation.default_pipeline import run_pipeline

    metrics = app_factory().test_client().get("/model").get_json()["metrics"]
    evaluation = run_pipeline().evaluation
    assert metrics["rmse"] == round(evaluation.svd.rmse, 4)
    assert metrics["mae"] == round(evaluation.svd.mae, 4)
