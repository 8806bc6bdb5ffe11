"""The README and the docs stay true: their generated blocks, their API reference and commands."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.config import settings_table
from tests.doc_commands import (
    PAGES,
    PROGRAMS,
    Command,
    Runner,
    commands,
    copy_project,
    fenced_blocks,
    page_name,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start) : text.index(end)].strip()


def test_the_configuration_page_shows_the_settings_table():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert between(page, "<!-- settings:start -->", "<!-- settings:end -->") == settings_table()


@pytest.mark.slow
def test_the_api_reference_is_the_document_the_app_serves():
    result = subprocess.run(
        [sys.executable, "tools/docs_reference.py", "--check"],
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


# --- One way to run commands: every command the README and the docs show runs as shown.

ALL_COMMANDS = [command for page in PAGES for command in commands(page)]
# Inline code in prose that names a command the way a fresh clone cannot run it.
BARE_COMMAND = re.compile(r"`(python3?|flask|gunicorn|pip) [^`]*`")
# The settings table is generated from the settings' own words (recsys/config/).
GENERATED = re.compile(r"<!-- settings:start -->.*?<!-- settings:end -->", re.DOTALL)
# The docs show real sizes; a fresh copy runs the same commands smaller.
SMALL_SIZES = {
    "--users 1000000": "--users 2000",
    "--products 50000": "--products 200",
    "--events 10000000": "--events 20000",
}
# Commands the runner does not run, and why (matched against the command line).
NOT_RUN = {
    r"^make test": "runs the whole suite, this test included",
    r"^make bench": "runs every benchmark: most of an hour",
    r"^make readme": "test_the_example_sessions_match_a_fresh_server runs the same tool",
    r"^docker ": "no Docker engine runs where the project is built and tested "
    "(tests/runtime/test_topology.py starts the same topology without containers)",
    r"localhost:8080": "the compose topology's nginx, started by docker compose",
    r"pip install -r requirements-spark.txt": ".ci/run installs it; a test does not "
    "install into the shared environment",
    r"spark-submit --master spark://spark-master": "needs a Spark cluster (host "
    "spark-master); tests/training/test_spark_cluster.py submits the same entry point to a "
    "standalone cluster it starts",
}
# Commands that fail today although the page is right, and why. The test
# insists that they fail, so it says when one is fixed and can leave this list.
EXPECTED_FAILURES: dict[str, str] = {}
# Commands that start a server (matched against the words after VAR=value assignments).
HTTP_SERVERS = re.compile(
    r"^(make (run|serve)\b|\.venv/bin/gunicorn |\.venv/bin/python (app|serve)\.py|"
    r"\.venv/bin/flask --app app run\b)"
)
DEFAULT_SERVER = Command("(the service, for curl)", 0, ".venv/bin/python app.py", "")


def spark_available() -> bool:
    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


def test_the_docs_show_commands():
    assert len(ALL_COMMANDS) > 40
    assert {page_name(page) for page in PAGES if commands(page)} >= {
        "README.md",
        "docs/getting-started.md",
        "docs/scaling.md",
    }


def test_every_command_runs_through_the_projects_environment():
    bare = [str(command) for command in ALL_COMMANDS if command.program not in PROGRAMS]
    assert bare == []


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_prose_names_commands_as_they_are_run(page):
    text = GENERATED.sub("", page.read_text(encoding="utf-8"))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    assert [found.group(0) for found in BARE_COMMAND.finditer(prose)] == []


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_commands_are_shown_in_sh_blocks_after_a_prompt(page):
    for language, line, lines in fenced_blocks(page.read_text(encoding="utf-8")):
        prompted = any(text.startswith("$ ") for text in lines)
        where = f"{page_name(page)}:{line}"
        assert prompted == (language == "sh"), f"{where}: a ```{language} block"


def test_commands_left_out_still_appear_in_the_docs():
    texts = [command.without_comment for command in ALL_COMMANDS]
    for pattern in NOT_RUN:
        assert any(re.search(pattern, text) for text in texts), pattern
    for text in EXPECTED_FAILURES:
        assert text in texts, text


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in PAGES if commands(page)], ids=page_name)
def test_every_command_a_page_shows_runs_in_a_fresh_copy(page, tmp_path):
    runner = Runner(copy_project(tmp_path), SMALL_SIZES)
    try:
        for command in commands(page):
            play(runner, command)
    finally:
        runner.stop()


def play(runner: Runner, command: Command) -> None:
    """Run one command as the page shows it, and fail unless it does what the page says."""
    if any(re.search(pattern, command.text) for pattern in NOT_RUN):
        return
    if "--engine spark" in command.text and not spark_available():
        if os.environ.get("RECSYS_REQUIRE_SPARK") == "1":
            pytest.fail(f"{command}: needs pyspark and Java")
        return
    shown_error = command.shown_output.startswith("error:")
    if HTTP_SERVERS.match(" ".join(command.words)) and not shown_error:
        runner.start(command, http=True)
        return
    worker = command.words[:4] == [".venv/bin/flask", "--app", "app", "worker"]
    if worker and "--once" not in command.words:
        runner.start(command, http=False)
        return
    if command.program == "curl" and runner.port == 0:
        runner.start(DEFAULT_SERVER, http=True)
    result = runner.run(command)
    said = result.stdout + result.stderr
    if command.without_comment in EXPECTED_FAILURES or shown_error:
        assert result.returncode != 0, f"{command} now succeeds: {said[-2000:]}"
        if shown_error:
            assert command.shown_output.splitlines()[0][:60] in said, f"{command}: {said}"
        return
    assert result.returncode == 0, f"{command} exited {result.returncode}: {said[-3000:]}"
    assert not re.search(r"^HTTP/\S+ 5\d\d", result.stdout, re.MULTILINE), str(command)


def test_the_readme_links_to_pages_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", readme)
    assert "docs/getting-started.md" in targets
    assert [target for target in targets if not (ROOT / target).is_file()] == []


def build_site(folder: Path) -> subprocess.CompletedProcess:
    """Build the docs site copied into folder, as `make docs` does."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("mkdocs")), "build", "--strict"],
        cwd=folder,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def break_a_link(docs: Path) -> None:
    page = docs / "api" / "index.md"
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace("models.md#explanations", "models.md#gone"), encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda docs: None, None),
        (lambda docs: (docs / "notes.md").write_text("# Notes\n"), "notes.md"),
        (lambda docs: (docs / "benchmarks.md").unlink(), "benchmarks.md"),
        (break_a_link, "#gone"),
    ],
    ids=["as committed", "a page left out of the nav", "a page dropped", "a broken anchor"],
)
def test_the_strict_build_fails_on_what_a_reader_would_miss(tmp_path, damage, complaint):
    shutil.copytree(DOCS, tmp_path / "docs")
    # The benchmarks page includes the records the benchmarks wrote.
    shutil.copytree(ROOT / "bench" / "records", tmp_path / "bench" / "records")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    damage(tmp_path / "docs")
    result = build_site(tmp_path)
    if complaint is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert complaint in result.stderr
