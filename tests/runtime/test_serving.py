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


def _app_py_env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "RECSYS_MODEL_DIR": str(tmp_path / "models"),
    }


def test_python_app_py_stops_with_one_line_when_its_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=_app_py_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert errors == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "listening on" not in result.stderr


def test_python_app_py_logs_its_address_once_it_accepts_connections(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=_app_py_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in server.stderr:
            if '"level"' in line and "listening on" in json.loads(line)["message"]:
                break
        else:
            pytest.fail("app.py exited without a listening line")
        assert json.loads(line)["message"] == f"listening on http://127.0.0.1:{port}"
        # Logged after the bind: the address takes connections already.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        server.terminate()
        server.wait(timeout=10)
