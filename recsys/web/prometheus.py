"""``GET /metrics`` in Prometheus's text format, and the HTTP series: requests and latency.

The other series are counted where their events happen: cache lookups and
Redis failures in ``recsys.online.history_cache``, the live model version in
``recsys.online.service``, ingested events in ``recsys.runtime.wiring``,
training jobs in ``recsys.training.jobs``. Under gunicorn every worker writes
its series to ``PROMETHEUS_MULTIPROC_DIR`` (gunicorn.conf.py prepares it) and
``/metrics`` adds them up, so any worker answers for the whole server.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Request, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from recsys.web.openapi import operation

bp = Blueprint("metrics", __name__)

REQUESTS = Counter(
    "recsys_http_requests",
    "HTTP requests answered, by endpoint (the route, not the path), method and status",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "recsys_http_request_duration_seconds",
    "Time from the request reaching Flask to its answer, by endpoint",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Requests that match no route are counted under one name, so a scan of
# random paths cannot create a series per path.
UNMATCHED = "unmatched"
# Each series' child, found once: prometheus-client's ``labels`` checks and
# locks on every call. As many as the series themselves.
_COUNTED: dict[tuple[str, str, int], Counter] = {}
_TIMED: dict[str, Histogram] = {}
# Where a request's start is kept (the WSGI environment: no context lookup).
_STARTED_KEY = "recsys.started"


@bp.get("/metrics")
@operation("Prometheus series in the text exposition format", (200, None), tags=["probes"])
def metrics():
    metrics_dir = current_app.extensions["recsys.runtime"].settings.metrics_dir
    if metrics_dir is None:
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(metrics_dir))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` (``request_hooks`` counts every request with the functions below)."""
    # The *_created series (a timestamp per series) only add noise; multiprocess
    # mode has none, so without them one server looks the same either way.
    disable_created_metrics()
    app.register_blueprint(bp)


def start_clock(request: Request) -> None:
    """Note when a request reached its first hook."""
    request.environ[_STARTED_KEY] = time.perf_counter()


def count_request(request: Request, response: Response) -> None:
    """Count a request by endpoint, method and status, and time it."""
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else UNMATCHED
    series = (endpoint, request.method, response.status_code)
    counted = _COUNTED.get(series)
    if counted is None:
        counted = _COUNTED.setdefault(series, REQUESTS.labels(*series[:2], str(series[2])))
    counted.inc()
    started = request.environ.get(_STARTED_KEY)
    if started is not None:
        timed = _TIMED.get(endpoint)
        if timed is None:
            timed = _TIMED.setdefault(endpoint, LATENCY.labels(endpoint))
        timed.observe(time.perf_counter() - started)
