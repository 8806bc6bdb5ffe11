"""Training in a worker process: jobs queued in the database, claimed once, served everywhere."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from recsys.store.engine import create_store_engine
from recsys.store.job_queue import JobQueue
from recsys.training.worker import TrainingWorker
from tests.builders import ROOT, runtime_of

WORKER = {"TRAINING_MODE": "worker"}


def queue_retrain(client) -> str:
    response = client.post("/admin/retrain")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["state"] == "queued"
    return response.get_json()["job_id"]


def job_of(client, job_id: str) -> dict:
    return client.get(f"/admin/jobs/{job_id}").get_json()


def counting_train(runtime) -> list[str]:
    """Count the runtime's trainings in the returned list."""
    calls: list[str] = []
    real_train = runtime.train

    def train():
        calls.append(threading.current_thread().name)
        return real_train()

    runtime.train = train
    return calls


def test_a_server_in_worker_mode_queues_the_job_and_does_not_train(any_app_factory):
    app = any_app_factory(**WORKER)
    calls = counting_train(runtime_of(app))
    job_id = queue_retrain(app.test_client())
    time.sleep(0.3)
    assert calls == []
    assert job_of(app.test_client(), job_id)["state"] == "queued"


def test_a_second_retrain_while_one_is_queued_is_a_409(any_app_factory):
    app = any_app_factory(**WORKER)
    first = queue_retrain(app.test_client())
    second = app.test_client().post("/admin/retrain")
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "retrain_in_progress"
    assert first in second.get_json()["error"]["message"]


def test_a_queued_job_survives_a_server_restart_and_a_worker_runs_it(any_app_factory):
    server = any_app_factory(**WORKER)
    job_id = queue_retrain(server.test_client())
    old_version = server.test_client().get("/model").get_json()["version"]

    restarted = any_app_factory(**WORKER)
    assert job_of(restarted.test_client(), job_id)["state"] == "queued"
    worker = any_app_factory(init=False, **WORKER)
    finished = runtime_of(worker).worker().run_once()

    assert finished is not None and finished.id == job_id
    job = job_of(restarted.test_client(), job_id)
    assert job["state"] == "succeeded"
    assert job["version"] != old_version
    # The server that reports the job serves its version (hot swap, no restart).
    assert restarted.test_client().get("/model").get_json()["version"] == job["version"]


def test_two_workers_never_run_one_job_twice(any_app_factory):
    server = any_app_factory(**WORKER)
    workers = [runtime_of(any_app_factory(init=False, **WORKER)) for _ in range(2)]
    calls = [counting_train(runtime) for runtime in workers]
    for _ in range(3):
        job_id = queue_retrain(server.test_client())
        start = threading.Barrier(2)
        claimed: list = []

        def race(runtime, start, claimed):
            worker = runtime.worker()
            start.wait()
            claimed.append(worker.run_once())

        threads = [threading.Thread(target=race, args=(w, start, claimed)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        ran = [job for job in claimed if job is not None]
        assert [job.id for job in ran] == [job_id]
        assert job_of(server.test_client(), job_id)["state"] == "succeeded"
    assert sum(len(c) for c in calls) == 3


def test_a_job_left_running_by_a_dead_worker_fails_and_a_queued_one_stays(any_app_factory):
    server = any_app_factory(**WORKER)
    runtime = runtime_of(server)
    stale = queue_retrain(server.test_client())
    assert JobQueue(runtime.store.engine).claim_next().id == stale  # then the worker "died"

    restarted = any_app_factory(**WORKER)
    failed = job_of(restarted.test_client(), stale)
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "interrupted"
    fresh = queue_retrain(restarted.test_client())
    any_app_factory(**WORKER)
    assert job_of(restarted.test_client(), fresh)["state"] == "queued"


def test_a_failed_job_is_recorded_by_the_worker_and_the_live_model_stays(app_factory):
    server = app_factory(**WORKER)
    version = server.test_client().get("/model").get_json()["version"]
    job_id = queue_retrain(server.test_client())
    worker_runtime = runtime_of(app_factory(init=False, **WORKER))

    def broken_train():
        raise RuntimeError("boom")

    worker_runtime.train = broken_train
    worker_runtime.worker().run_once()
    job = job_of(server.test_client(), job_id)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "training_failed"
    assert server.test_client().get("/model").get_json()["version"] == version


def test_the_worker_command_runs_the_queued_jobs_and_exits_with_once(app_factory):
    server = app_factory(**WORKER)
    job_id = queue_retrain(server.test_client())
    result = server.test_cli_runner().invoke(args=["worker", "--once", "--nice", "0"])
    assert result.exit_code == 0, result.output
    assert "ran 1 job(s)" in result.output
    assert job_of(server.test_client(), job_id)["state"] == "succeeded"


@pytest.mark.slow
def test_a_worker_process_trains_while_the_server_process_answers(app_factory, tmp_path):
    server = app_factory(**WORKER)
    client = server.test_client()
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": app_factory.database_url,
        "RECSYS_MODEL_DIR": str(app_factory.model_dir),
        "RECSYS_TRAINING_MODE": "worker",
        "RECSYS_WORKER_POLL_SECONDS": "0.2",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job_id = queue_retrain(client)
        deadline = time.monotonic() + 60
        while job_of(client, job_id)["state"] != "succeeded" and time.monotonic() < deadline:
            assert client.get("/recommend?user_id=1").status_code == 200
            time.sleep(0.1)
        job = job_of(client, job_id)
        assert job["state"] == "succeeded", job
        assert client.get("/model").get_json()["version"] == job["version"]
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output


def test_the_automatic_retrain_queues_a_job_for_the_worker(app_factory):
    server = app_factory(RETRAIN_EVERY_EVENTS=2, **WORKER)
    events = [{"user_id": 7, "product_id": 1, "purchased": 1}] * 2
    assert server.test_client().post("/interactions", json=events).status_code == 201
    job = runtime_of(app_factory(init=False, **WORKER)).worker().run_once()
    assert job is not None
    assert (job.trigger, job.state.value) == ("auto", "succeeded")


# seconds: a short JOB_LEASE_SECONDS, so a lapsed lease takes little time to see, yet
# long enough that a loaded machine still claims and checks a job within it.
LEASE = 1.0


def claim_and_die(runtime) -> str:
    """Claim the queued job as a worker would, then never beat: the worker "died"."""
    return JobQueue(runtime.store.engine, lease_seconds=LEASE).claim_next().id


def test_a_live_workers_next_poll_fails_a_job_whose_lease_lapsed(any_app_factory):
    server = any_app_factory(JOB_LEASE_SECONDS=LEASE, **WORKER)
    queue_retrain(server.test_client())
    worker = runtime_of(any_app_factory(init=False, JOB_LEASE_SECONDS=LEASE, **WORKER)).worker()
    dead = claim_and_die(runtime_of(server))

    assert worker.run_once() is None  # within the lease, the job is held
    assert job_of(server.test_client(), dead)["state"] == "running"
    time.sleep(LEASE + 0.1)
    assert worker.run_once() is None
    job = job_of(server.test_client(), dead)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "interrupted"
    assert "lease" in job["error"]["message"]


def test_a_retrain_request_fails_a_job_whose_lease_lapsed_and_is_queued(any_app_factory):
    server = any_app_factory(JOB_LEASE_SECONDS=LEASE, **WORKER)
    queue_retrain(server.test_client())
    dead = claim_and_die(runtime_of(server))

    assert server.test_client().post("/admin/retrain").status_code == 409
    time.sleep(LEASE + 0.1)
    fresh = queue_retrain(server.test_client())
    assert job_of(server.test_client(), dead)["state"] == "failed"
    assert job_of(server.test_client(), fresh)["state"] == "queued"


def test_a_worker_keeps_the_lease_of_a_job_it_trains_for_longer_than_the_lease(app_factory):
    server = app_factory(JOB_LEASE_SECONDS=LEASE, **WORKER)
    job_id = queue_retrain(server.test_client())
    worker_runtime = runtime_of(app_factory(init=False, JOB_LEASE_SECONDS=LEASE, **WORKER))
    real_train = worker_runtime.train

    def slow_train():
        time.sleep(4 * LEASE)
        return real_train()

    worker_runtime.train = slow_train
    worker = threading.Thread(target=worker_runtime.worker().run_once)
    worker.start()
    # Another process looks for lapsed leases all the while.
    other = JobQueue(runtime_of(server).store.engine, lease_seconds=LEASE)
    expired = []
    while worker.is_alive():
        expired.append(other.fail_expired())
        time.sleep(LEASE / 4)
    worker.join()
    assert sum(expired) == 0
    assert job_of(server.test_client(), job_id)["state"] == "succeeded"


def test_the_lease_must_be_positive():
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        JobQueue(sa.create_engine("sqlite://"), lease_seconds=0)


def test_a_worker_that_lost_its_lease_records_what_really_happened(app_factory, caplog):
    server = app_factory(JOB_LEASE_SECONDS=LEASE, **WORKER)
    job_id = queue_retrain(server.test_client())
    worker_runtime = runtime_of(app_factory(init=False, JOB_LEASE_SECONDS=LEASE, **WORKER))
    real_train = worker_runtime.train

    def train_while_failed_elsewhere():
        # As another process would after a beat lost to a database outage.
        JobQueue(worker_runtime.store.engine).fail_unfinished("interrupted: lease lapsed", True)
        time.sleep(LEASE)
        return real_train()

    worker_runtime.train = train_while_failed_elsewhere
    finished = worker_runtime.worker().run_once()
    assert finished is not None
    job = job_of(server.test_client(), job_id)
    assert job["state"] == "succeeded"
    assert server.test_client().get("/model").get_json()["version"] == job["version"]
    assert "after another process failed it" in caplog.text


def test_a_worker_says_once_in_one_line_that_the_store_is_down_and_when_it_is_back(
    app_factory, tmp_path, caplog
):
    app_factory(**WORKER)  # init: the store's tables
    worker_runtime = runtime_of(app_factory(init=False, **WORKER))
    queue = worker_runtime.job_queue
    down = create_store_engine(f"sqlite:///{tmp_path / 'missing' / 'events.db'}")
    queue.engine = down  # a database the worker cannot open, as when it is down
    worker = TrainingWorker(worker_runtime.trainer, queue, poll_seconds=0.01)
    runner = threading.Thread(target=worker.run_forever)
    with caplog.at_level(logging.INFO, logger="recsys.training.worker"):
        runner.start()
        time.sleep(0.5)  # some fifty polls, every one refused
        queue.engine = worker_runtime.store.engine
        time.sleep(0.2)
        worker.stop()
        runner.join(timeout=10)
    said = [
        (r.levelname, r.getMessage(), r.exc_info)
        for r in caplog.records
        if r.name == "recsys.training.worker"
    ]
    assert [(level, exc_info) for level, _, exc_info in said] == [
        ("WARNING", None),
        ("INFO", None),
    ]
    assert said[0][1].startswith("could not claim or record a training job: the event store")
    assert said[1][1] == "the event store answers again: training jobs are claimed"
