"""A standalone Spark cluster on this host whose workers share no temporary files with the driver.

pyspark's own launcher (``spark-class``) starts a master and workers of one
core each. Every worker runs in a mount namespace of its own with a private
tmpfs on /tmp (``unshare --mount``), so nothing the driver writes to its
temporary directory is visible to the executors, as on separate hosts. Only
what stands for software installed on every host (this virtualenv) and for
shared storage (the folders the test names) is bound back into each
worker's /tmp when it lives there. Needs root (mount namespaces), pyspark
and Java.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def cluster_missing_reason() -> str | None:
    """Return why this host cannot run the cluster (None when it can)."""
    if os.geteuid() != 0:
        return "starting workers in mount namespaces of their own needs root"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare and mount (util-linux) are not installed"
    return None


# What the master's log says once it listens (Spark 3 and 4 word them so).
MASTER_URL = re.compile(r"Starting Spark master at (spark://\S+)")
MASTER_UI_PORT = re.compile(r"Bound MasterWebUI to \S+, and started at http://\S+:(\d+)")


def _first(pattern: re.Pattern[str], text: str) -> str:
    found = pattern.search(text)
    return found.group(1) if found else ""


class SparkCluster:
    """A master and workers started with spark-class; stop() ends every process they started.

    Args:
        logs: Folder for the daemons' output.
        shared: Folders the workers must see (the shared storage).
        workers: How many workers (1 core and ``memory`` each).
        memory: Each worker's memory for executors.
    """

    def __init__(self, logs: Path, shared: list[Path], workers: int = 2, memory: str = "1g"):
        self.logs = logs
        self.shared = shared
        self.workers = workers
        self.memory = memory
        # Set by start() from what the master reports it bound: a port chosen
        # here could be taken by another process before the JVM binds it, and
        # Spark then quietly moves to the next port.
        self.url = ""
        self.ui_url = ""
        self._processes: list[subprocess.Popen] = []
        # A folder outside /tmp through which a worker reaches the host's /tmp
        # while it binds back what it may see (its own namespace only).
        self._holders: list[Path] = []

    def start(self, timeout: float = 180.0) -> SparkCluster:
        """Start the master, then the workers; return once every worker has registered."""
        self.logs.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        self._spawn(
            "master",
            [
                str(SPARK_HOME / "bin" / "spark-class"),
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--webui-port",
                "0",
            ],
        )
        while not (self.url and self.ui_url):
            self._wait_a_little(deadline, "the Spark master did not start")
            master_log = (self.logs / "master.log").read_text(errors="replace")
            self.url = _first(MASTER_URL, master_log)
            ui_port = _first(MASTER_UI_PORT, master_log)
            # The log names the host "localhost"; the UI listens on 127.0.0.1 only.
            self.ui_url = f"http://127.0.0.1:{ui_port}" if ui_port else ""
        for number in range(self.workers):
            self._spawn(f"worker-{number}", self._worker_command())
        while self.alive_workers() < self.workers:
            self._wait_a_little(deadline, "the Spark workers did not register")
        return self

    def _wait_a_little(self, deadline: float, failure: str) -> None:
        """Sleep briefly; past the deadline, or if a daemon exited, raise with the logs' tails."""
        exited = [process.args for process in self._processes if process.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"a Spark daemon exited ({exited[0]})" if exited else failure
            raise RuntimeError(f"{why}; the daemons' last log lines:\n{self.log_tails()}")
        time.sleep(0.5)

    def log_tails(self, lines: int = 15) -> str:
        """Return the last ``lines`` lines of each daemon's log, each under its file's name."""
        tails = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append("\n".join([f"== {log}", *tail]))
        return "\n".join(tails)

    def _worker_command(self) -> list[str]:
        holder = Path(tempfile.mkdtemp(prefix="recsys-spark-worker-", dir="/var/tmp"))
        self._holders.append(holder)
        keep = {Path(sys.prefix).resolve(), *(path.resolve() for path in self.shared)}
        binds = [
            f'mkdir -p "{path}" && mount --bind "{holder}/{path.relative_to("/tmp")}" "{path}"'
            for path in sorted(keep)
            if path.is_relative_to("/tmp")
        ]
        script = " && ".join(
            [
                f'mount --bind /tmp "{holder}"',
                "mount -t tmpfs -o size=2g tmpfs /tmp",
                *binds,
                f'exec "{SPARK_HOME}/bin/spark-class" org.apache.spark.deploy.worker.Worker '
                f"{self.url} --host 127.0.0.1 --cores 1 --memory {self.memory} "
                "--webui-port 0 --work-dir /tmp/spark-work",
            ]
        )
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]

    def _spawn(self, name: str, command: list[str]) -> None:
        env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}
        with open(self.logs / f"{name}.log", "wb") as log:
            # A session of its own: stop() signals the whole group, executors included.
            self._processes.append(
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=2) as r:
                return int(json.load(r).get("aliveworkers", 0))
        except OSError:
            return 0

    def stop(self) -> None:
        """Stop the workers (and their executors), then the master; remove the holders."""
        for process in reversed(self._processes):
            _stop_group(process)
        self._processes.clear()
        for holder in self._holders:
            shutil.rmtree(holder, ignore_errors=True)
        self._holders.clear()


def _stop_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def spark_submit(
    cluster: SparkCluster, script: Path, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    """Run ``script`` with spark-submit in client mode on the cluster, the project as a zip."""
    bundle = Path(tempfile.mkdtemp(prefix="recsys-submit-")) / "recsys.zip"
    shutil.make_archive(str(bundle.with_suffix("")), "zip", cwd, "recsys")
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master",
        cluster.url,
        "--deploy-mode",
        "client",
        "--py-files",
        str(bundle),
        "--jars",
        "/usr/share/java/postgresql.jar",
        "--driver-memory",
        "1g",
        "--executor-memory",
        cluster.memory,
        "--executor-cores",
        "1",
        "--conf",
        f"spark.pyspark.python={sys.executable}",
        "--conf",
        "spark.driver.host=127.0.0.1",
        # Executors on one host name read each other's shuffle files from disk;
        # these stand for separate hosts, whose disks they cannot read.
        "--conf",
        "spark.shuffle.readHostLocalDisk=false",
        str(script),
        *args,
    ]
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env={**os.environ, "SPARK_HOME": str(SPARK_HOME), **env},
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        shutil.rmtree(bundle.parent, ignore_errors=True)
