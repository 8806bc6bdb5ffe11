"""The entry points really serve HTTP: `python app.py` and `flask --app app run`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.builders import ROOT

# Real servers in subprocesses: seconds each.
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "app.py", "--port", "{port}"],
        # What the README says for Flask's own runner: init, then run.
        [
            "sh",
            "-c",
            f"{sys.executable} -m flask --app app init && "
            f"exec {sys.executable} -m flask --app app run --port {{port}}",
        ],
    ],
    ids=["python app.py", "flask run"],
)
def test_the_entry_point_serves_recommendations_over_http(command, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "RECSYS_MODEL_DIR": str(tmp_path / "models"),
    }
    server = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "the server did not start within 60 s"
                time.sleep(0.2)
        status, body = _get(f"{base}/recommend?user_id=1")
        assert status == 200
        assert body["strategy"] == "svd" and len(body["recommendations"]) == 5
        assert all(item["name"] for item in body["recommendations"])
        status, body = _get(f"{base}/recommend?user_id=abc")
        assert status == 400 and body["error"]["code"] == "invalid_parameter"
    finally:
        server.terminate()
        server.wait(timeout=10)
    # What an operator sees on the first start, instead of silence.
    log = server.stderr.read()
    for message in (
        "event store ready",
        "filled the empty event store",
        "published model",
        "ready in",
    ):
        assert message in log, log
