"""A service on an empty store (``DATA_PATH=``): it starts, says what it lacks, learns.

Also: a model published while a process answers "no model" (by ``init``, a
training job or another process) is served at that process's next request.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from recsys.store.artifacts import ModelRegistry
from recsys.store.engine import is_unusable_store
from recsys.store.migrate import upgrade_to
from recsys.training.train import NoTrainingDataError, TrainingSettings, train_and_publish
from tests.builders import BUNDLED_LOG, ROOT, SMALL_CATALOG, AppFactory, runtime_of
from tests.servers import free_port, http_request

PRODUCTS = SMALL_CATALOG.assign(price=SMALL_CATALOG["price"].astype(float)).to_dict("records")
FIRST_EVENTS = [
    {"user_id": 1, "product_id": 1, "purchased": 0},
    {"user_id": 1, "product_id": 2, "purchased": 1},
    {"user_id": 2, "product_id": 2, "purchased": 0},
]
# Every read of the live model, before there is one.
MODEL_READS = ["/recommend?user_id=1", "/popular", "/similar?product_id=1", "/model"]


@pytest.fixture
def empty_app(any_app_factory):
    """Return a service initialised on an empty store (DATA_PATH=), on each database."""
    return any_app_factory(DATA_PATH="")


def wait_for_a_live_model(app, within: float = 60.0) -> None:
    """Wait for the app's training jobs, then until its next request finds a model."""
    runtime = runtime_of(app)
    deadline = time.monotonic() + within
    while not runtime.start():
        assert time.monotonic() < deadline, "no model went live"
        runtime.jobs.wait_all(timeout=1)


# -- training on a store's first events ------------------------------------------------


@pytest.mark.parametrize("model", ["svd", "auto", "als"])
@pytest.mark.parametrize("events", [1, 3])
def test_a_first_model_is_published_from_a_stores_first_few_events(
    catalog_store, tmp_path, model, events
):
    from recsys.data.events import events_from_json

    catalog_store.add_interactions(events_from_json(FIRST_EVENTS[:events]))
    registry = ModelRegistry(tmp_path / "models")
    published = train_and_publish(catalog_store, registry, TrainingSettings(model=model))
    assert registry.load_latest() is not None
    assert published.training["interactions"] == events


def test_training_an_empty_store_says_there_is_nothing_to_train_on(catalog_store, tmp_path):
    with pytest.raises(NoTrainingDataError, match="no interactions to train on; record some"):
        train_and_publish(catalog_store, ModelRegistry(tmp_path / "models"))


# -- an empty store, in process -------------------------------------------------------


def test_init_on_an_empty_store_succeeds_without_a_model(empty_app):
    report = runtime_of(empty_app).init_report
    assert report is not None
    assert (report.version, report.trained, report.filled) == (None, None, False)


def test_an_empty_store_is_live_and_not_ready_for_want_of_a_model(empty_app):
    client = empty_app.test_client()
    ready = client.get("/readyz")
    assert client.get("/healthz").status_code == 200
    assert ready.status_code == 503
    assert ready.get_json()["missing"] == ["model"]
    assert ready.get_json()["error"] == {"code": "no_model", "message": "not ready: no model"}


@pytest.mark.parametrize("path", MODEL_READS)
def test_reads_before_the_first_model_are_json_503s_that_say_why(empty_app, path):
    response = empty_app.test_client().get(path)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    error = response.get_json()["error"]
    assert error["code"] == "model_unavailable"
    assert "the first model is trained when events arrive" in error["message"]


def test_an_empty_store_takes_products_and_events(empty_app):
    client = empty_app.test_client()
    products = client.put("/products", json=PRODUCTS)
    events = client.post("/interactions", json=FIRST_EVENTS)
    assert (products.status_code, products.get_json()) == (200, {"accepted": 5})
    assert (events.status_code, events.get_json()) == (
        201,
        {"accepted": 3, "new": 3, "known": 0},
    )


def test_the_first_events_train_the_first_model_without_a_retrain_configured(empty_app):
    client = empty_app.test_client()
    client.put("/products", json=PRODUCTS)
    client.post("/interactions", json=FIRST_EVENTS[:1])
    wait_for_a_live_model(empty_app)
    answer = client.get("/recommend?user_id=2")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["recommendations"][0]["product_id"] == 1
    assert client.get("/readyz").status_code == 200


def test_with_training_in_workers_the_first_events_queue_the_first_job(any_app_factory):
    # The server only queues the job; `flask --app app worker` runs it.
    server = any_app_factory(DATA_PATH="", TRAINING_MODE="worker")
    client = server.test_client()
    client.put("/products", json=PRODUCTS)
    client.post("/interactions", json=FIRST_EVENTS)
    worker = any_app_factory(init=False, DATA_PATH="", TRAINING_MODE="worker")
    job = runtime_of(worker).worker().run_once()
    assert job is not None and job.state.value == "succeeded", job
    assert client.get("/recommend?user_id=1").status_code == 200


def test_events_do_not_start_a_training_job_while_a_model_is_live(app_factory):
    app = app_factory(DATA_PATH=str(BUNDLED_LOG))
    runtime = runtime_of(app)
    before = runtime.registry.versions()
    response = app.test_client().post("/interactions", json=FIRST_EVENTS)
    runtime.jobs.wait_all(timeout=30)
    assert response.status_code == 201
    assert runtime.registry.versions() == before


# -- a model published while a process answers "no model" --------------------------------


def test_a_model_init_publishes_is_served_at_the_next_request(any_app_factory):
    app = any_app_factory(init=False, DATA_PATH=str(BUNDLED_LOG))
    client = app.test_client()
    assert client.get("/recommend?user_id=1").status_code == 503
    runtime_of(app).init()
    assert client.get("/recommend?user_id=1").status_code == 200


def test_a_model_another_process_publishes_is_served_at_the_next_request(any_app_factory):
    waiting = any_app_factory(init=False, DATA_PATH=str(BUNDLED_LOG))
    client = waiting.test_client()
    assert client.get("/readyz").status_code == 503
    any_app_factory(DATA_PATH=str(BUNDLED_LOG))  # its init trains and publishes
    assert client.get("/readyz").status_code == 200
    assert client.get("/recommend?user_id=1").status_code == 200


# -- the commands an operator runs on an empty store ----------------------------------


def empty_store_env(tmp_path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RECSYS_")}
    env.update(
        RECSYS_DATA_PATH="",
        RECSYS_DATABASE_URL=f"sqlite:///{tmp_path / 'events.db'}",
        RECSYS_MODEL_DIR=str(tmp_path / "models"),
    )
    return env


def flask_command(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=empty_store_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_flask_init_on_an_empty_store_exits_0_saying_there_is_no_data_yet(tmp_path):
    done = flask_command(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ready: no data yet"), done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_flask_train_on_an_empty_store_fails_in_one_line(tmp_path):
    assert flask_command(tmp_path, "init").returncode == 0
    done = flask_command(tmp_path, "train")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: the event store has no interactions to train on; record some first "
        "(POST /interactions or `flask --app app import-interactions FILE`)"
    )


@pytest.mark.slow
def test_python_app_py_on_an_empty_store_serves_and_says_what_is_missing(tmp_path):
    port = free_port()
    log = tmp_path / "app.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=empty_store_env(tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"app.py exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, "app.py did not answer within 60 s"
            try:
                health = http_request(port, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.2)
        ready = http_request(port, "GET", "/readyz")
        assert health.status == 200
        assert (ready.status, ready.body["missing"]) == (503, ["model"])
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- a store nobody initialised: no tables at all ----------------------------------------------

# Every read or write of the store's tables, before `init` made them.
STORE_REQUESTS = [
    ("POST", "/interactions", {"user_id": 1, "product_id": 2, "type": "click"}),
    ("GET", "/products", None),
    ("GET", "/products/1", None),
    ("GET", "/stats", None),
    ("GET", "/users/1/history", None),
]


@pytest.mark.parametrize(("method", "path", "body"), STORE_REQUESTS)
def test_a_store_without_its_tables_answers_503_never_500(any_app_factory, method, path, body):
    client = any_app_factory(init=False).test_client()
    response = client.open(path, method=method, json=body)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "store_unavailable"


def test_a_store_older_than_the_code_is_not_ready_and_the_probe_says_to_run_init(
    any_app_factory,
):
    # Migrated up to 0010: the events table lacks the type and value columns 0011 adds.
    app = any_app_factory(init=False, DATA_PATH="")
    upgrade_to(runtime_of(app).store.engine, "0010")
    response = app.test_client().get("/readyz")
    assert (response.status_code, response.get_json()["missing"]) == (503, ["model", "database"])
    assert response.get_json()["error"]["message"].endswith(
        "no database: the event store lacks the service's tables: "
        "run `.venv/bin/flask --app app init` to create or migrate them"
    )
    runtime_of(app).init()
    assert app.test_client().get("/readyz").get_json()["missing"] == ["model"]


@pytest.mark.parametrize(
    "command",
    [
        ["train"],
        ["import-catalog", str(ROOT / "products.csv")],
        ["import-interactions", str(BUNDLED_LOG)],
        ["export-user", "1"],
        ["delete-user", "1"],
        ["prune-events", "--days", "30"],
        ["experiment", "list"],
        ["worker", "--once"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_command_on_a_store_without_its_tables_says_to_run_init_in_one_line(
    any_app_factory, command
):
    app = any_app_factory(init=False, TRAINING_MODE="worker")
    result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 2, result.output
    assert "the event store lacks the service's tables" in result.output
    assert "run `.venv/bin/flask --app app init` to create or migrate them" in result.output
    assert "Traceback" not in result.output


# -- an SQLite file that is no database, or a damaged one ------------------------------------


def damage(path, how: str) -> None:
    """Make an SQLite store unusable: a log named by mistake, or its first page overwritten."""
    if how == "not a database":
        path.write_text("user_id,product_clicked,purchased\n1,2,0\n")
        return
    with open(path, "r+b") as file:  # past the 100-byte header: the schema's page
        file.seek(100)
        file.write(b"\xff" * 3000)


@pytest.fixture(params=["not a database", "damaged"])
def unusable_sqlite(request, app_factory, tmp_path):
    """Yield a served app (its model published) whose SQLite file was then made unusable."""
    app = app_factory(DATA_PATH=str(BUNDLED_LOG))
    runtime_of(app).store.dispose()
    path = tmp_path / "events.db"
    for leftover in (tmp_path / "events.db-wal", tmp_path / "events.db-shm"):
        leftover.unlink(missing_ok=True)
    damage(path, request.param)
    return app, request.param


@pytest.mark.parametrize(("method", "path", "body"), STORE_REQUESTS)
def test_an_unusable_sqlite_file_answers_503_never_500(unusable_sqlite, method, path, body):
    app, _ = unusable_sqlite
    response = app.test_client().open(path, method=method, json=body)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "store_unavailable"


def test_on_an_unusable_sqlite_file_lists_come_from_the_model_and_the_probe_says_no_database(
    unusable_sqlite,
):
    app, _ = unusable_sqlite
    client = app.test_client()
    answer = client.get("/recommend?user_id=1")
    assert (answer.status_code, answer.get_json()["degraded"]) == (200, "store_unavailable")
    ready = client.get("/readyz").get_json()
    assert ready["error"] == {"code": "no_database", "message": "not ready: no database"}


@pytest.mark.parametrize(
    "command",
    [["init"], ["train"], ["import-interactions", str(BUNDLED_LOG)], ["export-user", "1"]],
    ids=lambda command: command[0],
)
def test_a_command_on_an_unusable_sqlite_file_says_so_in_one_line(unusable_sqlite, command):
    app, how = unusable_sqlite
    result = app.test_cli_runner().invoke(args=command)
    reason = "file is not a database" if how == "not a database" else "malformed"
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: the event store is unavailable: ")
    assert reason in result.output and "(check RECSYS_DATABASE_URL)" in result.output
    assert "Traceback" not in result.output


def test_a_production_server_starts_on_an_unusable_sqlite_file_and_logs_why(
    unusable_sqlite, caplog
):
    app, how = unusable_sqlite
    assert runtime_of(app).init_before_workers() is False
    reason = "file is not a database" if how == "not a database" else "malformed"
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "recsys.runtime.wiring"]
    assert warning.startswith("serving the published model: the event store is unavailable: ")
    assert reason in warning


# -- a PostgreSQL server that refuses the service's writes --------------------------------------


@pytest.fixture
def read_only_app(postgres_url, tmp_path):
    """Yield a served app whose PostgreSQL takes reads only (a standby, or made read-only)."""
    writable = AppFactory(postgres_url, tmp_path / "models")
    writable(DATA_PATH=str(BUNDLED_LOG))  # tables, events and a published model
    read_only = AppFactory(
        f"{postgres_url}%20-cdefault_transaction_read_only%3Don", tmp_path / "models"
    )
    yield read_only(init=False)
    read_only.close()
    writable.close()


def test_a_read_only_postgresql_refuses_events_with_503_and_still_answers_lists(read_only_app):
    client = read_only_app.test_client()
    posted = client.post("/interactions", json={"user_id": 1, "product_id": 2, "type": "click"})
    assert posted.status_code == 503, posted.get_data(as_text=True)
    assert posted.get_json()["error"]["code"] == "store_unavailable"
    answer = client.get("/recommend?user_id=1")
    assert answer.status_code == 200
    assert "degraded" not in answer.get_json()  # reads still work


@pytest.mark.parametrize(
    "command",
    [["import-interactions", str(BUNDLED_LOG), "--append"], ["delete-user", "1"]],
    ids=lambda command: command[0],
)
def test_a_command_a_read_only_postgresql_refuses_says_so_in_one_line(read_only_app, command):
    result = read_only_app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    said = result.output.splitlines()[-1]  # after the import's progress bar
    assert said.startswith("Error: the event store is unavailable: cannot execute ")
    assert said.endswith(" in a read-only transaction (check RECSYS_DATABASE_URL)")


class _DriverError(Exception):
    """A driver's error as psycopg and sqlite3 describe one: an SQLSTATE, or SQLite's code name."""

    def __init__(self, sqlstate: str | None = None, sqlite_errorname: str | None = None):
        super().__init__("refused")
        self.sqlstate = sqlstate
        self.sqlite_errorname = sqlite_errorname


@pytest.mark.parametrize(
    ("error", "unusable"),
    [
        (_DriverError(sqlstate="42P01"), True),  # undefined_table
        (_DriverError(sqlstate="42703"), True),  # undefined_column
        (_DriverError(sqlstate="25006"), True),  # read_only_sql_transaction
        (_DriverError(sqlstate="42501"), True),  # insufficient_privilege
        (_DriverError(sqlite_errorname="SQLITE_NOTADB"), True),
        (_DriverError(sqlite_errorname="SQLITE_CORRUPT_INDEX"), True),
        (_DriverError(sqlstate="23505"), False),  # unique_violation: the statement's own
        (_DriverError(sqlstate="22003"), False),  # numeric_value_out_of_range
        (_DriverError(sqlite_errorname="SQLITE_CONSTRAINT"), False),
    ],
    ids=lambda value: getattr(value, "sqlstate", None) or getattr(value, "sqlite_errorname", ""),
)
def test_which_store_errors_are_the_stores_state_and_so_an_outage(error, unusable):
    assert is_unusable_store(error) is unusable
