"""spark-submit on a standalone cluster whose workers share no temporary files with the driver.

The master and two workers (1 core, 1 GiB each) come from pyspark's own
launcher; each worker has a private /tmp (tests/spark_cluster.py), as if on
another host. The events and the model directory live in the test's folder,
which the workers do see: the shared storage. Training must therefore never
hand the executors a file of the driver's. Needs root, pyspark, Java and
PostgreSQL's JDBC driver; skipped without them unless RECSYS_REQUIRE_SPARK=1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.data.catalog import load_catalog
from recsys.store.artifacts import ModelRegistry
from recsys.store.bulk import import_log
from recsys.store.events import EventStore
from recsys.store.migrate import upgrade_to_head
from tests.builders import runtime_of
from tests.store_fixtures import AppFactory
from tests.training.test_spark import skip_or_fail, spark_missing_reason

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 1_000_000
STORE_EVENTS = 30_000
# Five sweeps instead of fifteen keep the run short; the quality is not what is tested here.
QUICK_ALS = {"als": {"iterations": 5, "factors": 16}}
# One cluster for the module: under `pytest -n 2 --dist loadgroup` (make test)
# both tests run on the same worker, so two clusters never compete for the cores.
pytestmark = pytest.mark.xdist_group("spark-cluster")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The folder standing for shared storage: events, parameters, models."""
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def cluster(shared):
    reason = spark_missing_reason()
    if reason is None:
        from tests.spark_cluster import cluster_missing_reason

        reason = cluster_missing_reason()
    if reason is None and not Path("/usr/share/java/postgresql.jar").is_file():
        reason = "no PostgreSQL JDBC driver at /usr/share/java/postgresql.jar"
    if reason is not None:
        skip_or_fail(reason)
    from tests.spark_cluster import SparkCluster

    cluster = SparkCluster(shared / "logs", shared=[shared], workers=2, memory="1g")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def generate(out: Path, events: int, users: int) -> None:
    command = [sys.executable, str(ROOT / "recommendation_system.py"), "generate"]
    command += ["--users", str(users), "--products", "5000", "--events", str(events)]
    subprocess.run([*command, "--out", str(out), "--force"], check=True, capture_output=True)


def fill_store(url: str, log: Path, catalog: Path) -> EventStore:
    """Migrate the store at ``url`` and import a catalog and a log into it."""
    store = EventStore.from_url(url)
    upgrade_to_head(store.engine)
    store.upsert_products(load_catalog(catalog))
    import_log(store.engine, log)
    return store


def submit(cluster, shared: Path, env: dict[str, str], *args: str) -> str:
    from tests.spark_cluster import spark_submit

    params = shared / "params.json"
    params.write_text(json.dumps(QUICK_ALS))
    settings = {"RECSYS_MODEL": "als", "RECSYS_MODEL_PARAMS_PATH": str(params), **env}
    staging = ["--staging-uri", f"file://{shared / 'staging'}"]
    done = spark_submit(
        cluster, ROOT / "tools" / "spark_train.py", [*staging, *args], settings, ROOT
    )
    # Spark's log lines bury the driver's traceback: show it first.
    output = done.stdout + done.stderr
    traceback = output[output.find("Traceback") :] if "Traceback" in output else ""
    assert done.returncode == 0, (traceback or output)[-6000:]
    return done.stdout


def serves_als(factory: AppFactory, user_id: int) -> dict:
    app = factory(MODEL="als")
    answer = app.test_client().get(f"/recommend?user_id={user_id}").get_json()
    assert runtime_of(app).service.live.is_live
    return answer


@pytest.mark.slow
@pytest.mark.spark
def test_spark_submit_trains_a_parquet_dataset_the_normal_server_serves(cluster, shared, tmp_path):
    events = shared / "events.parquet"
    generate(events, EVENTS, users=EVENTS // 10)
    models = shared / "models-parquet"
    env = {
        "RECSYS_MODEL_DIR": str(models),
        "RECSYS_CATALOG_PATH": str(shared / "events.products.csv"),
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
    }
    output = submit(cluster, shared, env, "--data", str(events))
    assert "published v00001" in output
    meta = ModelRegistry(models).read_metadata(ModelRegistry(models).versions()[0])
    assert meta.training["interactions"] == EVENTS
    assert meta.training["engine"] == "spark"
    assert meta.metrics["ranked_users"] > 0 and 0 < meta.metrics["ndcg@10"] <= 1
    # The server folds each user in from their history in its own store.
    server_store = f"sqlite:///{tmp_path / 'server.db'}"
    store = fill_store(server_store, events, shared / "events.products.csv")
    factory = AppFactory(server_store, models, DATA_PATH="")
    try:
        answer = serves_als(factory, user_id=1)
    finally:
        factory.close()
        store.dispose()
    assert answer["strategy"] == "als"
    assert answer["model_version"] == meta.version
    assert len(answer["recommendations"]) > 0


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.postgres
def test_spark_submit_trains_the_postgresql_store_over_jdbc(cluster, shared, postgres_url):
    log = shared / "store.parquet"
    generate(log, STORE_EVENTS, users=STORE_EVENTS // 10)
    store = fill_store(postgres_url, log, shared / "store.products.csv")
    models = shared / "models-jdbc"
    env = {"RECSYS_MODEL_DIR": str(models), "RECSYS_DATABASE_URL": postgres_url}
    submit(cluster, shared, env, "--jdbc-partitions", "3")
    meta = ModelRegistry(models).read_metadata(ModelRegistry(models).versions()[0])
    assert meta.training["interactions"] == STORE_EVENTS
    assert meta.training["source"].startswith("jdbc:postgresql://")
    factory = AppFactory(postgres_url, models)
    try:
        answer = serves_als(factory, user_id=1)
    finally:
        factory.close()
        store.dispose()
    assert answer["strategy"] == "als" and answer["model_version"] == meta.version
