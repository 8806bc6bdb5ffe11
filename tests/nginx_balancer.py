"""nginx in front of test servers: the shipped deploy/nginx.conf, moved onto loopback.

``loopback_config`` rewrites the shipped configuration for one test: its
upstream servers become 127.0.0.1 ports, it listens on 127.0.0.1, and its pid
and temporary files live in the test's folder. ``Nginx`` runs it in the
foreground (``nginx -c CONF -p PREFIX -g 'daemon off;'``) in a process group
of its own, which ``stop`` kills whole. Without an nginx binary the tests
that need one skip, unless ``RECSYS_REQUIRE_NGINX=1`` (CI), which makes them
fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT, Answer, free_port, http_request

SHIPPED_CONFIG = ROOT / "deploy" / "nginx.conf"
# Debian puts nginx in /usr/sbin, which an ordinary user's PATH may lack.
_SBIN = "/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"
_UPSTREAM = re.compile(r"server app\d+:8000")
_LISTEN = re.compile(r"listen 8080;")
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path=_SBIN)


def require_nginx() -> str:
    """Return the nginx binary; skip (or, with RECSYS_REQUIRE_NGINX=1, fail) without one."""
    binary = find_nginx()
    if binary is not None:
        return binary
    reason = "no nginx binary on PATH or in /usr/sbin (Debian: apt-get install nginx)"
    if os.environ.get("RECSYS_REQUIRE_NGINX") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_NGINX=1 makes nginx mandatory)")
    pytest.skip(f"{reason}; set RECSYS_REQUIRE_NGINX=1 to make this a failure")


def loopback_config(shipped: str, upstream_ports: list[int], port: int, prefix: Path) -> str:
    """Return the shipped configuration with loopback upstreams, listening on 127.0.0.1:port.

    Args:
        shipped: The text of deploy/nginx.conf.
        upstream_ports: One app server port per upstream server in it, in order.
        port: Where nginx listens.
        prefix: A folder of the test's own for the pid and temporary files.
    """
    upstreams = _UPSTREAM.findall(shipped)
    assert len(upstreams) == len(upstream_ports), (upstreams, upstream_ports)
    text = shipped
    for upstream, upstream_port in zip(upstreams, upstream_ports, strict=True):
        text = text.replace(upstream, f"server 127.0.0.1:{upstream_port}", 1)
    text, listens = _LISTEN.subn(f"listen 127.0.0.1:{port};", text)
    assert listens == 1, "deploy/nginx.conf must listen on 8080 exactly once"
    temp_paths = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in _TEMP_PATHS)
    text = text.replace("http {\n", "http {\n" + temp_paths, 1)
    main = f"pid {prefix / 'nginx.pid'};\n"
    if os.geteuid() == 0:
        # Workers of a root master run as an unprivileged user, who could not
        # enter the test's private temporary folder.
        main += "user root;\n"
    return main + text


def check_config(binary: str, config: Path, prefix: Path) -> subprocess.CompletedProcess:
    """Run ``nginx -t`` on a configuration; return the finished process."""
    return subprocess.run(
        [binary, "-t", "-c", str(config), "-p", str(prefix), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )


class Nginx:
    """nginx with the shipped configuration in front of loopback servers, in the foreground.

    Args:
        binary: The nginx binary (``require_nginx``).
        upstream_ports: The app servers' ports.
        prefix: A new folder for the configuration, pid, logs and temporary files.
    """

    def __init__(self, binary: str, upstream_ports: list[int], prefix: Path):
        self.port = free_port()
        prefix.mkdir(parents=True)
        self.config = prefix / "nginx.conf"
        self.config.write_text(
            loopback_config(SHIPPED_CONFIG.read_text(), upstream_ports, self.port, prefix)
        )
        self.access_log = prefix / "access.log"  # the configuration logs to standard output
        self.error_log = prefix / "error.log"
        with open(self.access_log, "wb") as out, open(self.error_log, "wb") as err:
            self.process = subprocess.Popen(
                [
                    binary,
                    "-c",
                    str(self.config),
                    "-p",
                    str(prefix),
                    "-e",
                    "stderr",
                    "-g",
                    "daemon off;",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        return http_request(self.port, method, path, body)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def wait_listening(self, within: float = 10) -> None:
        """Wait until nginx answers its own health location."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(OSError):
                if self.get("/nginx-health").status == 200:
                    return
            assert self.process.poll() is None, f"nginx exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"nginx not listening within {within} s"
            time.sleep(0.05)

    def log(self) -> str:
        return self.error_log.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the nginx master and its workers at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
