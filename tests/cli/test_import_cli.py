"""`flask --app app import-interactions`: each event once, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.builders import runtime_of


def run_import(app, path, *options: str):
    return app.test_cli_runner().invoke(args=["import-interactions", str(path), *options])


def test_a_file_with_event_ids_imported_twice_imports_nothing_the_second_time(
    any_app_factory, tmp_path
):
    app = any_app_factory()
    store = runtime_of(app).store
    before = store.counts().interactions
    path = tmp_path / "typed.csv"
    path.write_text(
        "user_id,product_clicked,purchased,type,value,event_id\n"
        "900,1,,view,,w-1\n900,2,,rating,4,w-2\n900,3,,dislike,,w-3\n901,1,1,,,w-4\n"
    )
    first = run_import(app, path)
    assert first.exit_code == 0, first.output
    assert f"imported 4 interactions from {path}\n" in first.output
    again = run_import(app, path)
    assert again.exit_code == 0, again.output
    assert f"imported 0 interactions from {path} (4 already recorded, by event_id)" in again.output
    assert store.counts().interactions == before + 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_file_without_event_ids_imported_again_is_refused_unless_appended(
    any_app_factory, tmp_path, stream
):
    app = any_app_factory()
    store = runtime_of(app).store
    path = tmp_path / "plain.csv"
    path.write_text("user_id,product_clicked,purchased\n900,1,0\n900,2,1\n")
    options = ["--stream"] if stream else []
    assert run_import(app, path, *options).exit_code == 0
    count = store.counts().interactions
    refused = run_import(app, path, *options)
    assert refused.exit_code == 1
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: this file was imported on ")
    assert lines[0].endswith("pass --append to import it again (nothing was imported)")
    assert store.counts().interactions == count
    appended = run_import(app, path, "--append", *options)
    assert appended.exit_code == 0, appended.output
    assert store.counts().interactions == count + 2


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            "900,1,,wish,",
            "line 3: type must be one of view, click, cart, purchase, rating, dislike (or empty), "
            "got 'wish'",
        ),
        ("900,1,,rating,0", "line 3: value must be 1 to 5 on a rating, got '0'"),
        ("900,1,,view,3", "line 3: value is only for a rating; type 'view' takes none, got '3'"),
    ],
)
def test_a_bad_typed_line_is_one_line_naming_file_and_line(
    any_app_factory, tmp_path, line, problem
):
    app = any_app_factory()
    store = runtime_of(app).store
    before = store.counts().interactions
    path = tmp_path / "bad.csv"
    path.write_text(f"user_id,product_clicked,purchased,type,value\n900,2,,cart,\n{line}\n")
    result = run_import(app, path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}, {problem} (nothing was imported)\n"
    assert store.counts().interactions == before
