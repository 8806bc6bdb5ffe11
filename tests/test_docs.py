"""The README and the docs stay true: their generated blocks, their API reference and commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recsys.serving.settings import settings_table

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start) : text.index(end)].strip()


def test_the_configuration_page_shows_the_settings_table():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert between(page, "<!-- settings:start -->", "<!-- settings:end -->") == settings_table()


def test_the_api_reference_is_the_document_the_app_serves():
    result = subprocess.run(
        [sys.executable, "tools/openapi_json.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_example_sessions_match_a_fresh_server():
    result = subprocess.run(
        [sys.executable, "tools/readme_examples.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
