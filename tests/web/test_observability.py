"""Observability: /metrics series, request ids on answers and in the JSON logs."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter

from recsys.web.request_id import RequestIdFilter
from tests.builders import runtime_of
from tests.servers import Production, service_env


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    """Return every sample of a /metrics answer: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metrics(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return scrape(response.get_data(as_text=True))


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_endpoint_and_status_with_their_latency(client):
    before = metrics(client)
    for path in ("/recommend?user_id=17", "/recommend?user_id=abc", "/no/such/path/42"):
        client.get(path)
        client.get(path)  # each series counts every request, its first and the next
    after = metrics(client)
    for endpoint, status in (("/recommend", "200"), ("/recommend", "400"), ("unmatched", "404")):
        labels = {"endpoint": endpoint, "method": "GET", "status": status}
        assert value(after, "recsys_http_requests_total", **labels) == (
            value(before, "recsys_http_requests_total", **labels) + 2
        )
    count = "recsys_http_request_duration_seconds_count"
    assert (
        value(after, count, endpoint="/recommend")
        == value(before, count, endpoint="/recommend") + 4
    )


def test_the_live_model_version_cache_lookups_and_ingested_events_are_series(client):
    version = client.get("/recommend?user_id=17").get_json()["model_version"]
    before = metrics(client)
    client.get("/recommend?user_id=17")
    events = [
        {"user_id": 17, "product_id": 4, "purchased": 1},
        {"user_id": 17, "product_id": 5, "purchased": 0},
    ]
    assert client.post("/interactions", json=events).status_code == 201
    after = metrics(client)
    assert value(after, "recsys_model_live", version=version, model_type="svd") == 1
    hits = {"cache": "answer", "result": "hit"}  # the same request again: its cached answer
    assert value(after, "recsys_cache_lookups_total", **hits) == (
        value(before, "recsys_cache_lookups_total", **hits) + 1
    )
    for purchased in ("0", "1"):
        assert value(after, "recsys_events_ingested_total", purchased=purchased) == (
            value(before, "recsys_events_ingested_total", purchased=purchased) + 1
        )


def test_retrain_durations_and_failures_are_series(app, client, monkeypatch):
    before = metrics(client)
    job = client.post("/admin/retrain").get_json()["job_id"]
    runtime_of(app).jobs.wait(job, timeout=60)

    def broken_training():
        raise RuntimeError("training broke (test)")

    monkeypatch.setattr(runtime_of(app), "train", broken_training)
    job = client.post("/admin/retrain").get_json()["job_id"]
    runtime_of(app).jobs.wait(job, timeout=60)
    after = metrics(client)
    count = "recsys_retrain_duration_seconds_count"
    for outcome in ("succeeded", "failed"):
        assert value(after, count, outcome=outcome) == value(before, count, outcome=outcome) + 1
    failures = "recsys_retrain_failures_total"
    assert value(after, failures) == value(before, failures) + 1
    new_version = runtime_of(app).service.metadata.version
    assert value(after, "recsys_model_live", version=new_version, model_type="svd") == 1


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("trace-42", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("caf\u00e9", False),
        ("tab\there", False),
    ],
)
def test_a_request_id_is_echoed_when_printable_and_short_else_replaced(bundled_client, given, kept):
    answer = bundled_client.get("/healthz", headers={"X-Request-ID": given})
    echoed = answer.headers["X-Request-ID"]
    if kept:
        assert echoed == given
    else:
        assert echoed != given and re.fullmatch("[0-9a-f]{32}", echoed)


def test_every_answer_carries_a_request_id_even_errors(bundled_client):
    ids = {
        bundled_client.get(path).headers["X-Request-ID"]
        for path in ("/healthz", "/recommend?user_id=abc", "/nowhere")
    }
    assert len(ids) == 3


def test_a_request_without_an_id_gets_a_new_one_every_time(bundled_client):
    ids = {bundled_client.get("/healthz").headers["X-Request-ID"] for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)


def test_log_records_name_the_request_they_were_written_for(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s %(request_id)s"))
    logger = logging.getLogger("recsys")
    logger.addHandler(handler)
    try:
        # The first request serves the model, and says so in the log.
        app.test_client().get("/recommend?user_id=17", headers={"X-Request-ID": "trace-42"})
        logging.getLogger("recsys.test").warning("outside any request")
    finally:
        logger.removeHandler(handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    serving = [r for r in records if r["message"].startswith("serving model")]
    assert serving and all(r["request_id"] == "trace-42" for r in serving)
    assert records[-1]["message"] == "outside any request" and records[-1]["request_id"] is None


# -- under the production server: one answer for all workers ----------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _recommend_requests(counter_file: Path) -> float:
    """Return the /recommend answers one worker counted in its own series file."""
    for metric in MultiProcessCollector.merge([str(counter_file)]):
        for sample in metric.samples:
            if sample.name == "recsys_http_requests_total" and sample.labels == {
                "endpoint": "/recommend",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


@pytest.mark.slow
def test_metrics_add_up_across_two_workers_of_the_production_server(tmp_path):
    metrics_dir = tmp_path / "metrics"
    env = service_env(f"sqlite:///{tmp_path / 'events.db'}", tmp_path / "models", WORKERS=2)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    server = Production(env, tmp_path / "logs")
    base = f"http://127.0.0.1:{server.port}"
    try:
        server.wait_ready(within=90)
        # Ready is one worker's answer; the other may still be starting (a
        # worker gets connections once it listens). Probes count no /recommend.
        server.ask_every_worker("/healthz")

        # A new connection per request, many at once: both workers answer.
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(lambda i: _get(f"{base}/recommend?user_id={1 + i % 100}")[0], range(300))
            )
        assert statuses == [200] * 300
        workers = sorted(server.worker_pids())
        assert len(workers) == 2
        served = [_recommend_requests(metrics_dir / f"counter_{pid}.db") for pid in workers]
        assert all(count > 0 for count in served) and sum(served) == 300

        samples = scrape(_get(f"{base}/metrics")[1])
        recommended = {"endpoint": "/recommend", "method": "GET", "status": "200"}
        assert value(samples, "recsys_http_requests_total", **recommended) == 300
        lookups = sum(
            value(samples, "recsys_cache_lookups_total", cache="answer", result=result)
            for result in ("hit", "miss")
        )
        assert lookups == 300  # every request looks for its cached answer first

        # A worker that dies keeps its counts; its replacement adds to them.
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(server.worker_pids()) < 2 or workers[0] in server.worker_pids():
            assert time.monotonic() < deadline, "the server did not replace the worker"
            time.sleep(0.1)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: _get(f"{base}/recommend?user_id=17"), range(20)))
        samples = scrape(_get(f"{base}/metrics")[1])
        assert value(samples, "recsys_http_requests_total", **recommended) == 320
        # child_exit dropped the dead worker's live gauge; the others still say 1.
        assert not (metrics_dir / f"gauge_livemax_{workers[0]}.db").exists()
        live = [v for (name, _), v in samples.items() if name == "recsys_model_live"]
        assert live == [1.0]
    finally:
        server.stop()
