"""Training pieces without HTTP: fingerprint, jobs, lock, auto retrain."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from recsys.store.artifacts import ArtifactMetadata
from recsys.training.jobs import (
    AutoRetrainer,
    JobState,
    RetrainInProgressError,
    Trainer,
    TrainingJobRunner,
    TrainingLock,
)
from recsys.training.train import fingerprint_interactions
from tests.builders import ROOT


def feedback_frame(pairs: list[tuple[int, int]], clicks: list[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(pairs, columns=["user_id", "product_id"])
    frame["clicks"] = clicks if clicks is not None else 1
    frame["engagement"] = frame["clicks"].astype(float)
    frame["rating"] = frame["engagement"].clip(1, 5)
    return frame


def fake_metadata(version: str = "v00001-20260101T000000Z") -> ArtifactMetadata:
    return ArtifactMetadata(
        version=version,
        model_type="svd",
        params={},
        trained_at="2026-01-01T00:00:00Z",
        data_fingerprint="x",
        metrics={"rmse": 1.0},
    )


def test_the_fingerprint_changes_with_any_interaction():
    log = pd.DataFrame({"user_id": [1, 2], "product_clicked": [3, 4], "purchased": [0, 1]})
    same = log.copy()
    changed = log.assign(purchased=[1, 1])
    longer = pd.concat([log, log.iloc[:1]], ignore_index=True)
    assert fingerprint_interactions(log) == fingerprint_interactions(same)
    assert len({fingerprint_interactions(x) for x in (log, changed, longer)}) == 3


def test_a_job_runs_in_the_background_and_records_its_result():
    published: list[str] = []
    runner = TrainingJobRunner(
        Trainer(fake_metadata), on_published=lambda m: published.append(m.version)
    )
    job = runner.submit(trigger="cli")
    assert job.state is JobState.QUEUED
    done = runner.wait(job.id, timeout=10)
    assert done.state is JobState.SUCCEEDED
    assert (done.version, done.metrics, done.trigger) == (
        fake_metadata().version,
        {"rmse": 1.0},
        "cli",
    )
    assert done.finished_at >= done.started_at >= done.requested_at
    assert published == [done.version]
    assert runner.submit(trigger="cli").id != job.id, "the runner is free for the next job"


def test_one_job_at_a_time():
    gate = threading.Event()
    runner = TrainingJobRunner(Trainer(lambda: (gate.wait(10), fake_metadata())[1]))
    first = runner.submit()
    with pytest.raises(RetrainInProgressError) as caught:
        runner.submit()
    assert caught.value.job_id == first.id
    gate.set()
    runner.wait(first.id, timeout=10)
    assert runner.submit().id != first.id


def test_a_failing_publish_callback_fails_the_job():
    def refuse(meta):
        raise ValueError("artifact unreadable")

    runner = TrainingJobRunner(Trainer(fake_metadata), on_published=refuse)
    job = runner.wait(runner.submit().id, timeout=10)
    assert job.state is JobState.FAILED
    assert job.error.startswith("training_failed: ")
    assert "artifact unreadable" not in job.error


def test_job_history_is_bounded():
    runner = TrainingJobRunner(Trainer(fake_metadata), history=3)
    ids = []
    for _ in range(5):
        ids.append(runner.submit().id)
        runner.wait(ids[-1], timeout=10)
    assert [runner.get(i) is not None for i in ids] == [False, False, True, True, True]


class CountingRunner:
    """Stands in for TrainingJobRunner: counts submissions."""

    def __init__(self, busy: bool = False):
        self.triggers: list[str] = []
        self.busy = busy

    def submit(self, trigger: str = "api"):
        if self.busy:
            raise RetrainInProgressError("running")
        self.triggers.append(trigger)
        return trigger


def test_auto_retrain_fires_each_time_n_events_accumulate():
    runner = CountingRunner()
    auto = AutoRetrainer(runner, every_events=10)
    assert [auto.record_events(n) for n in (4, 5)] == [None, None]
    assert auto.record_events(1) == "auto"
    assert auto.record_events(9) is None
    assert auto.record_events(30) == "auto"
    assert runner.triggers == ["auto", "auto"]


def test_auto_retrain_is_off_by_default_and_drops_triggers_while_busy():
    assert AutoRetrainer(CountingRunner()).record_events(10**6) is None
    assert AutoRetrainer(CountingRunner(busy=True), every_events=1).record_events(5) is None


def test_periodic_retrain_fires_on_schedule_until_stopped():
    runner = CountingRunner()
    auto = AutoRetrainer(runner, every_minutes=0.05 / 60)  # every 50 ms
    auto.start()
    deadline = time.monotonic() + 5
    while len(runner.triggers) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    auto.stop()
    assert runner.triggers[:2] == ["schedule", "schedule"]
    settled = len(runner.triggers)
    time.sleep(0.2)
    assert len(runner.triggers) <= settled + 1, "stop() ends the schedule"


@pytest.mark.parametrize(
    ("trained_minutes_ago", "due"),
    [(None, False), (59, False), (60, True), (600, True)],
    ids=["never-trained", "younger-than-the-period", "exactly-the-period", "older"],
)
def test_the_period_runs_from_the_last_training_any_process_did(trained_minutes_ago, due):
    last = None
    if trained_minutes_ago is not None:
        last = datetime.now(UTC) - timedelta(minutes=trained_minutes_ago, seconds=1)
    auto = AutoRetrainer(CountingRunner(), every_minutes=60, last_trained=lambda: last)
    assert auto.due(3600) is due


def test_the_schedule_submits_only_once_the_last_training_is_a_period_old():
    runner = CountingRunner()
    last = [datetime.now(UTC)]
    auto = AutoRetrainer(
        runner, every_minutes=0.2 / 60, last_trained=lambda: last[0], check_seconds=0.02
    )
    auto.start()
    time.sleep(0.1)
    assert runner.triggers == [], "trained 0.1 s ago: not due"
    last[0] -= timedelta(seconds=1)
    deadline = time.monotonic() + 5
    while not runner.triggers and time.monotonic() < deadline:
        time.sleep(0.01)
    auto.stop()
    assert runner.triggers[:1] == ["schedule"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"every_events": 0}, "every_events"), ({"every_minutes": -1}, "every_minutes")],
)
def test_auto_retrain_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoRetrainer(CountingRunner(), **kwargs)


def test_the_training_lock_is_held_by_one_holder_at_a_time(tmp_path):
    first, second = TrainingLock(tmp_path / "t.lock"), TrainingLock(tmp_path / "t.lock")
    assert first.try_acquire()
    assert not first.try_acquire(), "not re-entrant"
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_a_killed_holder_releases_the_training_lock(tmp_path):
    path = tmp_path / "t.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import fcntl, os, time
            fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = TrainingLock(path)
        assert not lock.try_acquire()
        holder.kill()
    finally:
        holder.wait(timeout=30)
    assert lock.try_acquire()
    lock.release()


def test_a_job_is_refused_while_another_process_holds_the_lock(tmp_path):
    other_process = TrainingLock(tmp_path / "t.lock")
    assert other_process.try_acquire()
    runner = TrainingJobRunner(Trainer(fake_metadata, TrainingLock(tmp_path / "t.lock")))
    with pytest.raises(RetrainInProgressError, match="another process is still training"):
        runner.submit()
    other_process.release()
    job = runner.wait(runner.submit().id, timeout=10)
    assert job.state is JobState.SUCCEEDED
    assert other_process.try_acquire(), "the runner released the lock after its job"


@pytest.mark.parametrize(
    ("code", "what"),
    [
        (".try_acquire(", "the training lock is taken"),
        ("TrainingLock(", "the training lock is made"),
        (".fail_unfinished(", "orphaned job records are closed"),
        ("def execute(", "a job is run"),
    ],
)
def test_training_has_one_way_in(code, what):
    # Two ways in drift apart: one of them forgets a metric, a record or the lock.
    places = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "recsys").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if code in line
    ]
    assert len(places) == 1, f"{what} in {len(places)} places: {places}"


def test_a_worker_waiting_for_the_lock_gives_up_when_stopped(tmp_path):
    other_process = TrainingLock(tmp_path / "t.lock")
    assert other_process.try_acquire()
    trainer = Trainer(fake_metadata, TrainingLock(tmp_path / "t.lock"), poll_seconds=0.01)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(RetrainInProgressError), trainer.held(until=stop):
        pytest.fail("the lock was taken from its holder")
    other_process.release()
    with trainer.held(until=stop):
        assert not other_process.try_acquire(), "a free lock is taken, stopped or not"
    assert other_process.try_acquire(), "and given back"
    other_process.release()
