"""The README stays true: its configuration table and its example session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recsys.serving.settings import settings_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def between(start: str, end: str) -> str:
    return README[README.index(start) + len(start) : README.index(end)].strip()


def test_the_configuration_table_is_the_settings_table():
    assert between("<!-- settings:start -->", "<!-- settings:end -->") == settings_table()


@pytest.mark.slow
def test_the_example_session_matches_a_fresh_server():
    result = subprocess.run(
        [sys.executable, "tools/readme_examples.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
