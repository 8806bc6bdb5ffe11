"""The command lines the README and the docs show, and a fresh copy of the project to run them in.

A page shows commands in fenced ``sh`` blocks, each after a ``$ `` prompt
(a line ending in ``\\`` goes on on the next one); the other lines of such a
block are what the command printed. ``Runner`` plays one page's commands in
order, in a temporary copy of the project whose ``.venv`` is a link to this
one's: one-shot commands must exit 0 (or fail as the page shows, when it shows
an ``error:`` line); a command that starts a server is started on a free port
and probed at ``/readyz``, and stays up for the page's next curl commands
until the page starts another or ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# What a command may start with (after VAR=value assignments): the project's
# own environment, make, and the system's tools. Never a bare python, flask,
# gunicorn or pip, which a fresh clone does not have on its PATH.
PROGRAMS = {
    ".venv/bin/python",
    ".venv/bin/flask",
    ".venv/bin/gunicorn",
    "make",
    "curl",
    "mkdir",
    "cp",
    "zip",
    "export",
    "docker",
    "spark-submit",
}
# Longest a one-shot command of the docs may take here (at the sizes below).
COMMAND_TIMEOUT = 600


@dataclass(frozen=True)
class Command:
    """One command line of a page, with what the page shows it printed."""

    page: str
    line: int
    text: str
    shown_output: str

    @property
    def without_comment(self) -> str:
        """The command line without its trailing ``# comment``."""
        return re.sub(r"\s+# .*$", "", self.text)

    @property
    def words(self) -> list[str]:
        """The command's words after its VAR=value assignments."""
        words = shlex.split(self.text, comments=True)
        while words and ASSIGNMENT.match(words[0]):
            words.pop(0)
        return words

    @property
    def program(self) -> str:
        return self.words[0] if self.words else ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """Return each fenced block of a markdown text: its language, first line number, lines."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and language is None:
            language, start, lines = fence.group(1), number + 1, []
        elif line.startswith("```") and language is not None:
            blocks.append((language, start, lines))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def commands(page: Path) -> list[Command]:
    """Return the commands of a page's ``sh`` blocks, in order."""
    found = []
    for language, start, lines in fenced_blocks(page.read_text(encoding="utf-8")):
        if language != "sh":
            continue
        index = 0
        while index < len(lines):
            if not lines[index].startswith("$ "):
                index += 1
                continue
            first, text = index, lines[index][2:]
            while text.endswith("\\") and index + 1 < len(lines):
                index += 1
                text = text[:-1] + " " + lines[index].strip()
            index += 1
            output = []
            while index < len(lines) and not lines[index].startswith("$ "):
                output.append(lines[index])
                index += 1
            found.append(Command(page_name(page), start + first, text.strip(), "\n".join(output)))
    return found


def copy_project(destination: Path) -> Path:
    """Copy the project's files (not its state) to destination/project, its .venv linked.

    A ``shared`` folder beside the project (the MovieLens ratings) is linked
    beside the copy too, so ``../shared/...`` paths mean the same there.
    """
    project = destination / "project"
    shutil.copytree(
        ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "instance",
            "site",
            ".env",
            "__pycache__",
            ".pytest_cache",
            ".ruff_cache",
            ".mypy_cache",
            "*.egg-info",
        ),
    )
    (project / ".venv").symlink_to((ROOT / ".venv").resolve(), target_is_directory=True)
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (destination / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return project


class Runner:
    """Plays commands in a copy of the project, one long-running server at a time."""

    def __init__(self, project: Path, sizes: dict[str, str]):
        self.project = project
        self.sizes = sizes
        self.server: subprocess.Popen | None = None
        self.port = 0
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RECSYS_", "PROMETHEUS_")) and key not in ("PORT", "MAKEFLAGS")
        }

    def shell_text(self, command: Command) -> str:
        """Return the command as this copy runs it: small sizes, the server's port."""
        text = command.text
        for shown, small in self.sizes.items():
            text = text.replace(shown, small)
        if self.port:  # the default ports of `make run` and of gunicorn
            text = re.sub(r"localhost:(5000|8000)\b", f"127.0.0.1:{self.port}", text)
        # The shared environment is already installed (and may be newer than
        # its marker): make must not try to install it again.
        return re.sub(r"(^|[;&|]\s*|\s)make ", r"\1make -o .venv/.installed ", text)

    def run(self, command: Command) -> subprocess.CompletedProcess:
        """Run a one-shot command and return what it did (its whole process group ends)."""
        process = subprocess.Popen(
            ["bash", "-c", self.shell_text(command)],
            cwd=self.project,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_group(process)
            raise AssertionError(f"{command} ran longer than {COMMAND_TIMEOUT} s") from None
        finally:
            stop_group(process)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def start(self, command: Command, http: bool) -> None:
        """Start a long-running command on a free port and wait until it serves (or runs)."""
        self.stop()
        self.port = free_port()
        env = {
            **self.env,
            "PORT": str(self.port),
            "RECSYS_PORT": str(self.port),
            "RECSYS_BIND": f"127.0.0.1:{self.port}",
        }
        self.server = subprocess.Popen(
            ["bash", "-c", self.shell_text(command)],
            cwd=self.project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if http:
            self.wait_ready(command)
        else:
            time.sleep(3)
            if self.server.poll() is not None:
                raise AssertionError(f"{command} exited: {self.server.stderr.read()[-2000:]}")

    def wait_ready(self, command: Command, within: float = 180) -> None:
        assert self.server is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(
                    f"{command} exited with {self.server.returncode}: "
                    f"{self.server.stderr.read()[-2000:]}"
                )
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.port}/readyz"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.5)
        raise AssertionError(f"{command} was not ready within {within} s")

    def stop(self) -> None:
        """Stop the running server (its whole process group), if any."""
        if self.server is None:
            return
        stop_group(self.server)
        assert self.server.stderr is not None
        self.server.stderr.close()
        self.server, self.port = None, 0


def stop_group(process: subprocess.Popen, within: float = 40) -> None:
    """Stop every process of process's group: SIGTERM, then SIGKILL after `within` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
