"""Start-up as an operator meets it: no side effects before init, one-line errors, make."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recsys.config import Settings, SettingsError, database_url
from recsys.config.metrics_dir import prepare_metrics_dir, remove_own_metrics_dir
from recsys.config.values import MAX_DURATION, MAX_RETENTION_DAYS
from recsys.web.context import runtime_of
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_listing_routes_on_an_empty_instance_creates_no_file_and_trains_nothing(tmp_path):
    # A copy of the entry point, so that its instance folder is inside tmp_path.
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").symlink_to(ROOT / "app.py")
    env = {"PYTHONPATH": str(ROOT)}
    for name in list(os.environ):
        if name.startswith("RECSYS_"):
            env[name] = ""
    result = run([sys.executable, "-m", "flask", "--app", "app", "routes"], env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "/recommend" in result.stdout
    assert sorted(p.name for p in project.iterdir()) == ["__pycache__", "app.py"] or sorted(
        p.name for p in project.iterdir()
    ) == ["app.py"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECSYS_MODEL": "magic"}, "RECSYS_MODEL: unknown model 'magic'; expected one of"),
        ({"RECSYS_PORT": "abc"}, "RECSYS_PORT: expected an integer from 1 to 65535, got 'abc'"),
        ({"RECSYS_DATABASE_URL": "mysql://x/y"}, "RECSYS_DATABASE_URL: expected sqlite:///FILE"),
        (
            {"RECSYS_DB_TIMEOUT_SECONDS": "-1"},
            "RECSYS_DB_TIMEOUT_SECONDS: expected a number > 0 and at most 1000000",
        ),
        ({"RECSYS_MODEL_PARAMS_PATH": "/nonexistent.json"}, "/nonexistent.json: file not found"),
        (
            {"RECSYS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"},
            "the event store is unavailable: connection failed",
        ),
    ],
)
@pytest.mark.parametrize("command", [["-m", "flask", "--app", "app", "init"], ["app.py"]])
def test_a_bad_setting_is_one_line_and_exit_status_2(tmp_path, env, message, command):
    env = {"RECSYS_MODEL_DIR": str(tmp_path / "models"), **env}
    result = run([sys.executable, *command], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


# Every entry point that writes the model directory, as an operator starts it.
MODEL_DIR_USERS = {
    "flask init": ["-m", "flask", "--app", "app", "init"],
    "flask train": ["-m", "flask", "--app", "app", "train"],
    "flask worker": ["-m", "flask", "--app", "app", "worker", "--once"],
    "python app.py": ["app.py", "--port", "{port}"],
    "python serve.py": ["serve.py", "--port", "{port}"],
    "gunicorn": [
        "-m",
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "-b",
        "127.0.0.1:{port}",
        "app:create_app()",
    ],
    "recommendation_system.py train": ["recommendation_system.py", "train"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", MODEL_DIR_USERS.values(), ids=list(MODEL_DIR_USERS))
def test_a_model_directory_that_cannot_be_made_stops_every_entry_point_in_one_line(
    tmp_path, command
):
    # A folder inside a file: no user, root included, can create it.
    (tmp_path / "a-file").write_text("")
    models = tmp_path / "a-file" / "models"
    env = {
        "RECSYS_MODEL_DIR": str(models),
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "RECSYS_AUTO_RETRAIN": "0",
    }
    args = [part.format(port=free_port()) for part in command]
    if args[0] == "recommendation_system.py":
        args += ["--model-dir", str(models)]
    result = run([sys.executable, *args], env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "model directory" in line]
    assert said == [
        f"{'Error' if args[0] == '-m' and args[1] == 'flask' else 'error'}: "
        f"cannot write the model directory {models}: Not a directory"
    ]


# Every entry point that imports the app, and with it prometheus-client's metrics.
METRICS_DIR_USERS = {
    name: command
    for name, command in MODEL_DIR_USERS.items()
    if name != "recommendation_system.py train"
}


@pytest.mark.slow
@pytest.mark.parametrize("command", METRICS_DIR_USERS.values(), ids=list(METRICS_DIR_USERS))
def test_a_metrics_directory_that_is_a_file_stops_every_entry_point_in_one_line(tmp_path, command):
    (tmp_path / "a-file").write_text("")
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "a-file"),
        "RECSYS_MODEL_DIR": str(tmp_path / "models"),
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
    }
    result = run([sys.executable, *[part.format(port=free_port()) for part in command]], env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write PROMETHEUS_MULTIPROC_DIR {tmp_path / 'a-file'}: Not a directory"
    )


@pytest.mark.slow
def test_a_flask_command_makes_a_metrics_directory_not_yet_made_and_runs(tmp_path):
    metrics = tmp_path / "not-yet" / "metrics"
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "RECSYS_MODEL_DIR": str(tmp_path / "models"),
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
    }
    result = run([sys.executable, *MODEL_DIR_USERS["flask init"]], env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert metrics.is_dir()


def test_the_metrics_directory_is_made_or_emptied_and_named_in_the_environment(
    tmp_path, monkeypatch
):
    own = tmp_path / "metrics"
    own.mkdir()
    (own / "counter_123.db").write_bytes(b"a previous run's series")
    (own / "notes.txt").write_text("kept")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(own))
    assert prepare_metrics_dir() == own
    assert sorted(p.name for p in own.iterdir()) == ["notes.txt"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    made = prepare_metrics_dir()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(made) and made.is_dir()
    remove_own_metrics_dir(made)
    remove_own_metrics_dir(own)  # an operator's own is kept
    assert not made.exists() and own.exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/shop", "postgresql+psycopg://u:p@db:5432/shop"),
        ("postgresql://u@db/shop", "postgresql+psycopg://u@db/shop"),
        ("postgresql+psycopg://u@db/shop", "postgresql+psycopg://u@db/shop"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
    ],
)
def test_the_database_url_forms_hosts_hand_out_are_accepted(given, expected):
    assert database_url(given) == expected


def test_an_environment_setting_is_overridden_by_the_config_mapping(tmp_path):
    settings = Settings.load({"RECSYS_MODEL": "als"}, {"MODEL": "popularity"}, tmp_path)
    assert settings.training.model == "popular"


def test_hosting_platforms_port_and_database_url_are_read_without_the_prefix(tmp_path):
    settings = Settings.load({"PORT": "8080", "DATABASE_URL": "postgres://h/db"}, None, tmp_path)
    assert settings.server.port == 8080
    assert settings.database_url == "postgresql+psycopg://h/db"


def test_a_settings_error_names_the_config_key_when_it_came_from_the_mapping(tmp_path):
    with pytest.raises(SettingsError, match=r"^KEEP_MODEL_VERSIONS: expected an integer from 1"):
        Settings.load({}, {"KEEP_MODEL_VERSIONS": 0}, tmp_path)


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (["PORT=5201"], "app.py  --port 5201"),
        (["HOST=0.0.0.0", "PORT=8001"], "app.py --host 0.0.0.0 --port 8001"),
    ],
)
def test_make_run_passes_host_and_port_to_the_server(make_args, expected):
    # -n prints the commands without running them; -W skips the install step.
    result = run(["make", "-n", "-W", ".venv/.installed", "run", *make_args], {"MAKEFLAGS": ""})
    assert expected in result.stdout


@pytest.mark.parametrize("how", ["variable", "environment"])
def test_make_run_exports_model_as_the_service_setting(how):
    show = "show: ; @echo RECSYS_MODEL=$$RECSYS_MODEL"
    args = ["make", "-s", "--eval", show, "show"]
    env = {"MAKEFLAGS": "", "RECSYS_MODEL": ""}
    if how == "variable":
        args.append("MODEL=als")
    else:
        env["MODEL"] = "als"
    assert run(args, env).stdout.strip() == "RECSYS_MODEL=als"


def test_the_database_waits_well_under_the_production_worker_timeout(tmp_path, monkeypatch):
    import runpy

    # Reading the configuration prepares a metrics directory: keep it in tmp_path.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))

    from recsys.store.engine import create_store_engine

    gunicorn_settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    db_timeout = Settings.load({}, None, tmp_path).store.timeout_seconds
    assert db_timeout * 3 <= gunicorn_settings["timeout"]
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}", db_timeout)
    with engine.connect() as conn:
        busy_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
    engine.dispose()
    assert busy_ms == db_timeout * 1000


# Every setting that is a duration (seconds, minutes or hours).
DURATIONS = (
    "DB_TIMEOUT_SECONDS",
    "RETRAIN_EVERY_MINUTES",
    "WORKER_POLL_SECONDS",
    "JOB_LEASE_SECONDS",
    "MODEL_REFRESH_SECONDS",
    "REDIS_TIMEOUT_SECONDS",
    "EXPLORATION_SYNC_SECONDS",
    "AB_ATTRIBUTION_HOURS",
    "AB_REFRESH_SECONDS",
)


@pytest.mark.redis
def test_a_service_with_every_duration_and_the_retention_at_their_longest_serves_without_errors(
    app_factory, redis_url, cache_prefix, monkeypatch
):
    # A longer socket timeout, timer or date than these overflows inside
    # Python: every request answered 500 and background threads died.
    failed_threads = []
    monkeypatch.setattr(threading, "excepthook", failed_threads.append)
    app = app_factory(
        REDIS_URL=redis_url.url,
        CACHE_KEY_PREFIX=cache_prefix,
        RATELIMIT_KEY_PREFIX=cache_prefix,
        RATE_LIMIT_ADDRESS="100000 per second",  # counted in Redis
        EVENT_RETENTION_DAYS=str(MAX_RETENTION_DAYS),
        **dict.fromkeys(DURATIONS, str(MAX_DURATION)),
    )
    client = app.test_client()
    event = {"user_id": 17, "product_id": 3, "type": "click"}
    statuses = [
        client.get("/recommend?user_id=17").status_code,
        client.post("/interactions", json=event).status_code,
        client.get("/recommend?user_id=17").status_code,
        client.get("/readyz").status_code,
        client.post("/admin/retrain").status_code,
    ]
    runtime_of(app).jobs.wait_all(timeout=60)
    assert statuses == [200, 201, 200, 200, 202]
    assert [(hook.thread.name, repr(hook.exc_value)) for hook in failed_threads] == []
