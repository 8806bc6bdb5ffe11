""".env is read by every service entry point alike: `python app.py`, serve.py, gunicorn, `flask`.

Each test runs the entry points in a project folder of its own (links to
app.py, serve.py and gunicorn.conf.py, the code on PYTHONPATH), so the ``.env`` it
writes there is seen by no other test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import GUNICORN, ROOT, free_port, http_request

ENTRY_POINTS = {
    "python app.py": [sys.executable, "app.py"],
    "python serve.py": [sys.executable, "serve.py"],
    "gunicorn": [GUNICORN, "app:create_app()", "--no-control-socket"],
    "flask": [sys.executable, "-m", "flask", "--app", "app", "routes"],
}


@pytest.fixture
def project(tmp_path) -> Path:
    """Return a project folder holding the service's entry points (and no .env yet)."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("app.py", "serve.py", "gunicorn.conf.py"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def environment(**variables: str) -> dict[str, str]:
    """Return this process's environment without any service setting, plus ``variables``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RECSYS_", "FLASK_")) and name not in ("DATABASE_URL", "PORT")
    }
    return {**env, "PYTHONPATH": str(ROOT), **variables}


def run(command: list[str], folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("real_environment", "read"),
    [({}, "from-dotenv"), ({"RECSYS_MODEL": "from-environment"}, "from-environment")],
    ids=["dotenv-read", "environment-wins"],
)
def test_every_entry_point_reads_dotenv_and_the_real_environment_wins(
    project, tmp_path, entry_point, real_environment, read
):
    # A model no entry point knows shows which value it read, before any
    # start-up work; a server that read neither would start on a free port.
    (project / ".env").write_text("RECSYS_MODEL=from-dotenv\n")
    env = environment(
        RECSYS_DATABASE_URL=f"sqlite:///{tmp_path / 'events.db'}",
        RECSYS_MODEL_DIR=str(tmp_path / "models"),
        RECSYS_PORT=str(free_port()),
        RECSYS_BIND=f"127.0.0.1:{free_port()}",
        **real_environment,
    )
    result = run(ENTRY_POINTS[entry_point], project, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: RECSYS_MODEL: unknown model '{read}'")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["python app.py", "flask"])
def test_flask_skip_dotenv_turns_reading_dotenv_off(project, entry_point):
    (project / ".env").write_text("RECSYS_MODEL=from-dotenv\n")
    result = run(
        ENTRY_POINTS[entry_point], project, environment(FLASK_SKIP_DOTENV="1", RECSYS_PORT="none")
    )
    # The environment's own bad port is found; the .env's model was never read.
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: RECSYS_PORT: expected an integer"), result.stderr


@pytest.mark.slow
def test_the_offline_command_line_reads_no_service_setting(project):
    # recommendation_system.py takes its choices as arguments: neither the
    # environment nor .env changes what it does.
    (project / "recommendation_system.py").symlink_to(ROOT / "recommendation_system.py")
    (project / ".env").write_text("RECSYS_MODEL=from-dotenv\n")
    command = [sys.executable, "recommendation_system.py", "--help"]
    result = run(command, project, environment(RECSYS_PORT="none"))
    assert result.returncode == 0, result.stderr
    assert "from-dotenv" not in result.stderr


def wait_for_model(port: int, process: subprocess.Popen, within: float = 60) -> str:
    """Return the version /model answers on 127.0.0.1:port once the server is up."""
    deadline = time.monotonic() + within
    while True:
        try:
            return http_request(port, "GET", "/model").body["version"]
        except OSError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, f"nothing answered on {port} within {within} s"
            time.sleep(0.2)


@pytest.mark.slow
def test_make_run_make_serve_and_flask_commands_use_the_store_dotenv_names(project, tmp_path):
    app_port, serve_port = free_port(), free_port()
    (project / ".env").write_text(
        f"RECSYS_DATABASE_URL=sqlite:///{tmp_path / 'shop.db'}\n"
        f"RECSYS_MODEL_DIR={tmp_path / 'models'}\n"
        f"RECSYS_PORT={app_port}\n"
        f"RECSYS_BIND=127.0.0.1:{serve_port}\n"
        "RECSYS_WORKERS=1\n"
    )
    env = environment()
    initialised = run([sys.executable, "-m", "flask", "--app", "app", "init"], project, env)
    assert initialised.returncode == 0, initialised.stderr
    assert (tmp_path / "shop.db").exists()
    # What `make run` and `make serve` start, with nothing but .env to configure them.
    for command, port in (
        ([sys.executable, "app.py"], app_port),
        ([sys.executable, "serve.py"], serve_port),
    ):
        server = subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            # The model init trained, from the store and directory .env names.
            assert wait_for_model(port, server).startswith("v00001-")
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    assert not (project / "instance").exists()
