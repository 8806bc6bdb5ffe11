"""Regenerate the example sessions of the README and the docs against a fresh server.

Usage: .venv/bin/python tools/readme_examples.py [--check]

Starts ``.venv/bin/python app.py`` on a free port with a new store and
artifact directory, plays a fixed session of requests (shown as the curl
commands a user would type against the default port), and writes the answers
between the ``<!-- examples:start -->`` and ``<!-- examples:end -->`` markers:
the whole session in docs/getting-started.md, its first steps in README.md.
What ``recommendation_system.py`` prints goes between the pipeline markers of
docs/getting-started.md. With ``--check`` it writes nothing and exits 1 when a
page differs from a fresh run in anything but what changes on every run
(version times, job ids, clock times, durations).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
START, END = "<!-- examples:start -->", "<!-- examples:end -->"
PIPELINE_START, PIPELINE_END = "<!-- pipeline:start -->", "<!-- pipeline:end -->"
SHOWN_BASE = "localhost:5000"


class Session:
    """Sends requests to the server and records them as a shell transcript."""

    def __init__(self, base: str):
        self.base = base
        self.exchanges: list[str] = []

    def call(self, method: str, path: str, body=None, comment: str = "") -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            text = error.read().decode()
        self.exchanges.append(_command(method, path, body, comment) + "\n" + text.strip() + "\n")
        return json.loads(text)


# The README's short example: a list, a purchase, and the list without it.
SHORT_EXCHANGES = (0, 5, 6)


def _command(method: str, path: str, body, comment: str) -> str:
    url = f"'{SHOWN_BASE}{path}'" if "?" in path else f"{SHOWN_BASE}{path}"
    parts = ["$ curl"]
    if method != "GET":
        parts.append(f"-X {method}")
    parts.append(url)
    if body is not None:
        parts.append("-H 'Content-Type: application/json' \\\n    -d '" + json.dumps(body) + "'")
    line = " ".join(parts)
    return f"{line}      # {comment}" if comment else line


def play(session: Session) -> None:
    """The session the docs show (the README its first steps)."""
    first = session.call("GET", "/recommend?user_id=17&n=3")
    session.call(
        "GET", "/recommend?user_id=17&n=3&explain=true", comment="which past products led there"
    )
    session.call("GET", "/recommend?user_id=17&n=3&diversity=1", comment="one per category first")
    session.call(
        "GET",
        "/recommend?user_id=17&n=3&category=Home&category=Sports&exclude=17",
        comment="only these categories, never 17",
    )
    session.call("GET", "/recommend?user_id=17&n=2&offset=2", comment="the second page of two")
    bought = first["recommendations"][0]["product_id"]
    session.call(
        "POST",
        "/interactions",
        [
            {"user_id": 17, "product_id": bought, "purchased": 1},
            {"user_id": 501, "product_id": 4, "purchased": 0, "timestamp": "2026-11-29T10:00:00Z"},
        ],
    )
    session.call(
        "GET",
        "/recommend?user_id=17&n=3",
        comment=f"{bought} was just bought: gone, and folded in; no retrain",
    )
    session.call(
        "GET", "/recommend?user_id=501&n=3", comment="a new user: personal from their first event"
    )
    session.call(
        "POST",
        "/interactions",
        {"user_id": 501, "product_id": 9, "purchased": 0, "timestamp": "2026-11-29T10:05:00Z"},
    )
    session.call("GET", "/recommend?user_id=501&n=3", comment="their second event changes it")
    session.call(
        "POST",
        "/recommend/session",
        {"items": [4, 9], "n": 3},
        comment="an anonymous visitor with the same clicks",
    )
    job = session.call("POST", "/admin/retrain")
    deadline = time.monotonic() + 120
    status = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(session.base + job["status_url"], timeout=30) as response:
            status = json.loads(response.read())
        if status["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    session.call("GET", job["status_url"])
    session.call("GET", "/recommend?user_id=501&n=3", comment="the new version learned from them")
    session.call("GET", "/recommend?user_id=abc")
    session.call(
        "POST",
        "/interactions",
        [
            {"user_id": 1, "product_id": 4, "purchased": 0},
            {"user_id": 1, "product_id": 999, "purchased": 0},
        ],
    )
    session.call("GET", "/readyz")


def run_session() -> list[str]:
    """Start a fresh server, play the session, and return its exchanges (command and answer)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as state:
        env = {
            **os.environ,
            "RECSYS_DATABASE_URL": f"sqlite:///{state}/recsys.db",
            "RECSYS_MODEL_DIR": f"{state}/models",
            "RECSYS_MODEL_REFRESH_SECONDS": "0",
            # Explored slots as the session's start left them: no impression
            # sync may fall inside the session, however slow the host.
            "RECSYS_EXPLORATION_SYNC_SECONDS": "3600",
        }
        # The defaults, whatever the caller's environment (the tests turn exploration off).
        env.pop("RECSYS_MODEL", None)
        env.pop("RECSYS_EXPLORATION", None)
        server = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, server)
            session = Session(base)
            play(session)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return session.exchanges


def transcript(exchanges: list[str]) -> str:
    """Return exchanges as one shell transcript, a blank line between them."""
    return "\n".join(exchanges)


def _wait_ready(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError("the server did not become ready within 120 s")


_VOLATILE = [
    (re.compile(r"v(\d{5})-\d{8}T\d{6}Z"), r"v\1-TIME"),
    (re.compile(r"[0-9a-f]{32}"), "JOB"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z"), "TIME"),
    (re.compile(r'"(duration_seconds|seconds)":[0-9.]+'), r'"\1":N'),
]


def normalise(text: str) -> str:
    """Blank out what changes on every run."""
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def pipeline_transcript() -> str:
    """Return what `python recommendation_system.py` prints, as a shell transcript."""
    result = subprocess.run(
        [sys.executable, "recommendation_system.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return "$ .venv/bin/python recommendation_system.py\n" + result.stdout.rstrip() + "\n"


def readme_block(readme: str, start_marker: str = START, end_marker: str = END) -> str:
    start, end = readme.index(start_marker), readme.index(end_marker)
    block = readme[start + len(start_marker) : end]
    return block.strip().removeprefix("```sh").removesuffix("```").strip() + "\n"


def replace_block(readme: str, start_marker: str, end_marker: str, body: str) -> str:
    start, end = readme.index(start_marker), readme.index(end_marker)
    return readme[: start + len(start_marker)] + "\n```sh\n" + body + "```\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    exchanges, pipeline = run_session(), pipeline_transcript()
    short = transcript([exchanges[i] for i in SHORT_EXCHANGES])
    blocks = {
        README: [(START, END, short)],
        GETTING_STARTED: [
            (START, END, transcript(exchanges)),
            (PIPELINE_START, PIPELINE_END, pipeline),
        ],
    }
    stale = []
    for page, replacements in blocks.items():
        text = page.read_text(encoding="utf-8")
        if args.check:
            if any(
                normalise(readme_block(text, start, end)) != normalise(body)
                for start, end, body in replacements
            ):
                stale.append(page.relative_to(ROOT))
            continue
        for start, end, body in replacements:
            text = replace_block(text, start, end, body)
        page.write_text(text, encoding="utf-8")
        print(f"updated the examples of {page.relative_to(ROOT)}")
    if stale:
        print(
            f"the examples of {', '.join(map(str, stale))} differ from a fresh run; run make readme"
        )
        return 1
    if args.check:
        print("the examples match a fresh run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
