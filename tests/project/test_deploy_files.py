"""The deployment files agree with the server's rules: Dockerfile, .env.example, compose, nginx.

Docker engines cannot run here, so the image is checked as far as that
allows: its CMD and ENV (read with dockerfile-parse) are run on this machine,
in the project folder as the image's WORKDIR holds it, with the example
``.env`` filled in as its comments ask. compose.yaml is read as YAML and its
services' variables are checked against the settings table; the shipped nginx
configuration passes ``nginx -t`` once compose's host names are mapped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from dotenv import dotenv_values

from recsys.config import SETTINGS, Settings
from recsys.config.api_keys import new_key
from recsys.config.open_bind import open_bind_refusal
from tests.nginx_balancer import SHIPPED_CONFIG, check_config, require_nginx
from tests.servers import ROOT, free_port, http_request

DOCKERFILE = DockerfileParser(path=str(ROOT / "Dockerfile"))
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
EXAMPLE_ENV = ROOT / ".env.example"
SETTING_VARIABLES = {name for s in SETTINGS for name in (s.env_name, *s.also_env)}
# compose's ${NAME}, ${NAME:-default}, ${NAME:?message} (and without the colon).
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def image_command() -> list[str]:
    return json.loads(DOCKERFILE.cmd)


def image_environment() -> dict[str, str]:
    return dict(DOCKERFILE.envs)


def example_env() -> dict[str, str]:
    """Return .env.example's variables as docker compose and the entry points read them."""
    return {name: value or "" for name, value in dotenv_values(EXAMPLE_ENV).items()}


def filled_example_env(keys_entry: str) -> dict[str, str]:
    """Return the example .env with its empty secrets set, as its comments ask."""
    env = example_env()
    assert "RECSYS_API_KEYS" in env, ".env.example has no RECSYS_API_KEYS line to fill in"
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        env[name] = secrets.token_hex(24)
    env["RECSYS_API_KEYS"] = keys_entry
    return env


def interpolate(value: str, env: dict[str, str]) -> str:
    """Return a compose value with its ${...} replaced; raise LookupError as compose refuses."""

    def replace(match: re.Match) -> str:
        name, operator, argument = match.groups()
        given = env.get(name)
        unset = given is None or (given == "" and operator and operator.startswith(":"))
        if operator and operator.endswith("?") and unset:
            raise LookupError(f"{name}: {argument}")
        if operator and operator.endswith("-") and unset:
            return argument
        return given or ""

    return _INTERPOLATION.sub(replace, value)


def app_services() -> dict[str, dict[str, Any]]:
    """Return the compose services built from this project's image."""
    return {name: s for name, s in COMPOSE["services"].items() if s.get("build") == "."}


# -- the image -------------------------------------------------------------------------


def test_the_images_address_is_a_setting_on_the_port_it_exposes_and_probes():
    # A --bind in the command would silently override RECSYS_BIND from `docker run -e`.
    assert not any(part == "--bind" or part.startswith("--bind=") for part in image_command())
    bind = image_environment()["RECSYS_BIND"]
    assert Settings.load({"RECSYS_BIND": bind}, None, ROOT).server.bind == (bind,)
    port = int(bind.rpartition(":")[2])
    exposed = {
        int(i["value"].split("/")[0]) for i in DOCKERFILE.structure if i["instruction"] == "EXPOSE"
    }
    (healthcheck,) = [i["value"] for i in DOCKERFILE.structure if i["instruction"] == "HEALTHCHECK"]
    probed = {urlsplit(url).port for url in re.findall(r"http://[^'\" ]+", healthcheck)}
    assert exposed == probed == {port}


def test_the_image_listens_on_every_interface_so_the_example_env_asks_for_keys():
    bind = image_environment()["RECSYS_BIND"]
    assert open_bind_refusal(False, False, [bind]) is not None
    keys = Settings.load(filled_example_env(new_key(["read"])[1].config_entry()), None, ROOT)
    assert open_bind_refusal(bool(keys.security.api_keys), keys.security.allow_open, [bind]) is None


@pytest.fixture
def image_env(tmp_path):
    """Return the environment of the image's command: ENV, then a local store and model dir."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RECSYS_") and name not in ("DATABASE_URL", "PORT")
    }
    # The image's PATH holds its installed requirements (gunicorn, python).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {
        **env,
        **image_environment(),
        "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'events.db'}",
        "RECSYS_MODEL_DIR": str(tmp_path / "models"),
    }


@pytest.mark.slow
def test_the_image_refuses_to_start_on_every_interface_with_the_example_env_as_shipped(
    image_env,
):
    # Refused before anything listens: safe to run with the image's own 0.0.0.0 bind.
    started = subprocess.run(
        image_command(),
        cwd=ROOT,
        env={**image_env, **example_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2, started.stderr[-2000:]
    # gunicorn's own "Starting gunicorn" line comes first.
    (line,) = [line for line in started.stderr.splitlines() if not line.startswith("[")]
    assert line.startswith("error: no API keys are configured (RECSYS_API_KEYS)")


@pytest.mark.slow
def test_the_images_command_serves_with_the_example_env_filled_in(image_env):
    assert "--bind" not in image_command()  # the address below must be the one it uses
    key, configured = new_key(["read"])
    port = free_port()
    # Loopback for the test: the image's own address was checked above.
    env = {**image_env, **filled_example_env(configured.config_entry())}
    env["RECSYS_BIND"] = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        image_command(),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if http_request(port, "GET", "/readyz").status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-4000:]
            assert time.monotonic() < deadline, "not ready within 90 s"
            time.sleep(0.2)
        assert http_request(port, "GET", "/healthz").status == 200
        assert http_request(port, "GET", "/recommend?user_id=1").status == 401
        answer = http_request(port, "GET", "/recommend?user_id=1", headers={"X-API-Key": key})
        assert answer.status == 200 and len(answer.body["recommendations"]) == 5
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


# -- compose.yaml and .env.example -----------------------------------------------------


def test_every_service_variable_of_compose_and_the_example_env_is_a_setting():
    for name, service in app_services().items():
        unknown = {v for v in service["environment"] if v.startswith("RECSYS_")}
        assert unknown <= SETTING_VARIABLES, (name, unknown - SETTING_VARIABLES)
    # The example's settings, the commented-out ones too.
    listed = re.findall(r"^#?\s*(RECSYS_\w+)=", EXAMPLE_ENV.read_text(), re.MULTILINE)
    assert listed and set(listed) <= SETTING_VARIABLES, set(listed) - SETTING_VARIABLES


def test_every_app_service_reads_usable_settings_with_the_example_env_filled_in(tmp_path):
    dotenv = filled_example_env(new_key(["read", "ingest"])[1].config_entry())
    commented = re.findall(r"^#\s*(RECSYS_\w+)=(.*)$", EXAMPLE_ENV.read_text(), re.MULTILINE)
    for name, service in app_services().items():
        assert service["env_file"] == ".env", name
        environment = {k: interpolate(str(v), dotenv) for k, v in service["environment"].items()}
        # env_file, then environment: compose's order of precedence.
        settings = Settings.load({**dotenv, **environment}, None, tmp_path)
        assert settings.security.api_keys, name
        for variable, value in commented:  # each example, uncommented, is usable too
            Settings.load({**dotenv, **environment, variable: value}, None, tmp_path)


def test_compose_refuses_to_start_until_the_example_envs_secrets_and_keys_are_set():
    example = example_env()
    required = set()
    for service in COMPOSE["services"].values():
        for value in [*service.get("environment", {}).values(), *service.get("command", [])]:
            try:
                interpolate(str(value), example)
            except LookupError as missing:
                required.add(str(missing).partition(":")[0])
    assert required == {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "RECSYS_API_KEYS"}
    assert all(example[name] == "" for name in required)


@pytest.mark.parametrize("path", ["compose.yaml", "Dockerfile", ".env.example"])
def test_every_example_request_to_the_service_sends_an_api_key(path):
    requests = [line for line in (ROOT / path).read_text().splitlines() if "curl " in line]
    assert all("X-API-Key" in line for line in requests), requests


def test_nginx_sends_to_the_app_services_on_the_port_the_image_listens_on():
    upstreams = re.findall(r"^\s*server (\S+):(\d+)", SHIPPED_CONFIG.read_text(), re.MULTILINE)
    image_port = image_environment()["RECSYS_BIND"].rpartition(":")[2]
    servers = {name for name, s in app_services().items() if s.get("expose")}
    assert {host for host, _ in upstreams} == servers
    for host, port in upstreams:
        assert port == image_port and port in [str(p) for p in COMPOSE["services"][host]["expose"]]
    assert "8080:8080" in COMPOSE["services"]["nginx"]["ports"]


@pytest.mark.nginx
def test_the_shipped_nginx_configuration_passes_nginx_t_with_composes_host_names_mapped(
    tmp_path,
):
    binary = require_nginx()
    text = SHIPPED_CONFIG.read_text()
    # What compose's network does: each service's name resolves to an address.
    mapped, count = re.subn(
        r"^(\s*server )(" + "|".join(COMPOSE["services"]) + r"):",
        r"\g<1>127.0.0.1:",
        text,
        flags=re.MULTILINE,
    )
    assert count == 2
    config = tmp_path / "nginx.conf"
    config.write_text(mapped)
    checked = check_config(binary, config, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
