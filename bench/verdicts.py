"""Verdicts of a benchmark's targets: one line each, the exit status, and a record for the docs.

Each benchmark judges its targets through a ``Verdicts``, then returns
``verdicts.finish()`` as its exit status: 1 if any target failed, else 0.
With ``--record FILE`` (``add_record_option``) it also writes what it printed
and its verdict table to FILE as markdown, headed by the run's date, commit
and command, so the documentation quotes figures of a run, never typed ones.

Usage::

    verdicts = Verdicts("bench_x.py", record=args.record)  # before printing figures
    verdicts.check("ratio <= 1.10", f"{ratio:.2f}", ratio <= 1.10)
    verdicts.inform("a worst case", f"{worst:.2f}")
    verdicts.not_run("10M training", "the run had no 10M size")
    return verdicts.finish()
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
PASS, FAIL, INFORMATION, NOT_RUN = "PASS", "FAIL", "information", "not run"


@dataclass(frozen=True)
class Verdict:
    """One target of a run: what it asks, what was measured, and how that came out."""

    target: str
    measured: str
    outcome: str


class _Tee(io.TextIOBase):
    """Write to the terminal and keep a copy for the record."""

    def __init__(self, terminal: TextIO):
        self.terminal = terminal
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.terminal.write(text)

    def flush(self) -> None:
        self.terminal.flush()


def add_record_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--record FILE`` to a benchmark's arguments."""
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the output and the verdicts to FILE (markdown, with date and commit)",
    )


def commit() -> str:
    """Return the checked-out commit, marked ``-dirty`` when tracked files have changed."""
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return found.stdout.strip()


class Verdicts:
    """The targets of one benchmark run.

    Args:
        benchmark: The script's name, for the messages and the record.
        record: Where to write the record (None: nowhere). Output printed
            from now on is kept for it.
    """

    def __init__(self, benchmark: str, record: Path | None = None):
        self.benchmark = benchmark
        self.record = record
        self.verdicts: list[Verdict] = []
        self.started = datetime.datetime.now(datetime.UTC)
        self._tee: _Tee | None = None
        if record is not None:
            self._tee = _Tee(sys.stdout)
            sys.stdout = self._tee

    def check(self, target: str, measured: str, ok: bool) -> bool:
        """Judge one target; return ``ok``."""
        self.verdicts.append(Verdict(target, measured, PASS if ok else FAIL))
        return ok

    def inform(self, what: str, measured: str) -> None:
        """Show a figure beside the targets that no target judges."""
        self.verdicts.append(Verdict(what, measured, INFORMATION))

    def not_run(self, target: str, why: str) -> None:
        """Show a target this run could not judge, and why."""
        self.verdicts.append(Verdict(target, why, NOT_RUN))

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.outcome == FAIL]

    def table(self) -> str:
        """Return the verdicts as aligned text lines."""
        width = max((len(v.target) for v in self.verdicts), default=0)
        lines = [f"  {v.target:<{width}}  {v.measured:>10}  {v.outcome}" for v in self.verdicts]
        return "\n".join(lines)

    def finish(self) -> int:
        """Print the verdicts, write the record if asked, and return the exit status."""
        if self._tee is not None:
            # The record keeps the figures; its verdicts are the table below them.
            sys.stdout = self._tee.terminal
        print(f"\nTargets of {self.benchmark}:")
        print(self.table() if self.verdicts else "  none judged in this run")
        failed = self.failed
        if failed:
            names = "; ".join(v.target for v in failed)
            print(f"{self.benchmark}: {len(failed)} target(s) FAILED: {names}")
        elif any(v.outcome == PASS for v in self.verdicts):
            print(f"{self.benchmark}: every target judged passed")
        else:
            print(f"{self.benchmark}: no target judged in this run")
        if self.record is not None:
            self.write_record(self.record)
            print(f"recorded in {self.record}")
        return 1 if failed else 0

    def markdown(self, output: str = "") -> str:
        """Return the run as markdown: heading, date, commit, command, output and verdicts."""
        arguments = sys.argv[1:]
        if "--record" in arguments:  # the record's own path says nothing of the run
            at = arguments.index("--record")
            arguments = arguments[:at] + arguments[at + 2 :]
        command = shlex.join(["python", f"bench/{self.benchmark}", *arguments])
        lines = [
            f"<!-- written by bench/{self.benchmark} --record; do not edit by hand -->",
            f"Run of `{command}` on {self.started:%Y-%m-%d %H:%M} UTC at commit `{commit()}`, "
            f"on a machine with {os.cpu_count()} CPUs.",
            "",
        ]
        if output.strip():
            lines += ["```text", output.rstrip("\n"), "```", ""]
        lines += ["| target | measured | verdict |", "| --- | --- | --- |"]
        lines += [
            f"| {v.target.replace('|', '/')} | {v.measured} | {v.outcome} |" for v in self.verdicts
        ]
        return "\n".join(lines) + "\n"

    def write_record(self, path: Path) -> None:
        """Write the markdown record to ``path`` (its folder is created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        output = self._tee.copy.getvalue() if self._tee is not None else ""
        path.write_text(self.markdown(output), encoding="utf-8")
