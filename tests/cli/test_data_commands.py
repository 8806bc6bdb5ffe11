"""The lifecycle commands: delete-user, export-user, prune-events, export-recommendations.

Each runs on SQLite and PostgreSQL (``any_app_factory``); bad input gets one line.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from recsys.data.events import Event
from recsys.data.timestamps import utc_now
from recsys.runtime import recommendation_export
from tests.builders import expose, runtime_of


@pytest.fixture
def app(any_app_factory):
    return any_app_factory()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_delete_user_erases_the_user_and_says_how_many_rows_went(app, runner):
    result = runner.invoke(args=["delete-user", "17"])
    assert result.exit_code == 0, result.output
    assert (
        "deleted user 17: 23 interactions, 0 exposure_events, 0 exposures, 1 users" in result.output
    )
    (record,) = runtime_of(app).store.deletions(17)
    assert record.deleted_by.startswith("cli:")
    body = app.test_client().get("/recommend?user_id=17").get_json()
    assert body["fallback_reason"] == "unknown_user"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["delete-user", "999999"], "Error: user_id 999999 has no stored data"),
        (["export-user", "999999"], "Error: user_id 999999 has no stored data"),
        (["delete-user", "0"], "0 is not in the range 1<=x<="),
        (["delete-user", "abc"], "'abc' is not a valid integer range"),
        (["export-user", "-3"], "No such option '-3'"),
    ],
)
def test_a_bad_or_unknown_user_id_gets_one_line(runner, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert message in result.output


def test_export_user_prints_every_stored_fact_as_json(runner, tmp_path):
    printed = runner.invoke(args=["export-user", "17"])
    assert printed.exit_code == 0, printed.output
    body = json.loads(printed.output)
    assert body["user"]["id"] == 17 and len(body["interactions"]) == 23
    out = tmp_path / "user.json"
    assert runner.invoke(args=["export-user", "17", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == body


def test_prune_events_deletes_the_events_past_the_retention(any_app_factory):
    app = any_app_factory(EVENT_RETENTION_DAYS="30")
    store = runtime_of(app).store
    old = utc_now() - timedelta(days=40)
    store.add_interactions([Event(5000, 3, False, old), Event(5001, 4, True, old)])
    expose(store, 5000, served_at=old)
    expose(store, 17)
    result = app.test_cli_runner().invoke(args=["prune-events"])
    assert result.exit_code == 0, result.output
    assert "deleted 2 events recorded before" in result.output
    assert "deleted 1 A/B exposures served before it and 1 events linked to exposures" in (
        result.output
    )
    assert len(store.export_user(17)["exposures"]) == 1
    assert store.count_events_before(utc_now() - timedelta(days=30)) == 0
    assert store.user_history(17).events == 23  # the bundled log is recent


def test_retraining_reads_only_the_events_within_the_retention(any_app_factory):
    app = any_app_factory(EVENT_RETENTION_DAYS="30")
    runtime = runtime_of(app)
    old = utc_now() - timedelta(days=40)
    runtime.store.add_interactions([Event(5000 + i, 3, False, old) for i in range(50)])
    meta = runtime.train(force=True)
    assert meta.training["interactions"] == 3223  # the bundled log, recorded now; none of the old
    assert meta.training["retention_days"] == 30


def test_flask_train_says_which_window_of_the_store_it_read(any_app_factory):
    app = any_app_factory(EVENT_RETENTION_DAYS="30")
    result = app.test_cli_runner().invoke(args=["train", "--force"])
    assert result.exit_code == 0, result.output
    assert "trained on 3223 interactions recorded since " in result.output
    assert "(EVENT_RETENTION_DAYS)" in result.output


def test_flask_train_without_a_retention_names_no_window(any_app_factory):
    result = any_app_factory().test_cli_runner().invoke(args=["train", "--force"])
    assert result.exit_code == 0, result.output
    assert "trained on 3223 interactions" in result.output
    assert "recorded since" not in result.output


def test_prune_events_keeps_at_most_a_century_and_refuses_more_by_name(runner):
    kept = runner.invoke(args=["prune-events", "--days", "36500"])
    assert kept.exit_code == 0, kept.output
    assert "deleted 0 events recorded before 19" in kept.output
    refused = runner.invoke(args=["prune-events", "--days", "99999999999"])
    assert refused.exit_code == 2, refused.output
    assert "'--days': 99999999999 is not in the range 1<=x<=36500" in refused.output


def test_prune_events_without_a_retention_is_refused(runner):
    result = runner.invoke(args=["prune-events"])
    assert result.exit_code == 2
    assert "event retention is off: set RECSYS_EVENT_RETENTION_DAYS or pass --days" in result.output


# -- export-recommendations --------------------------------------------------------------------


def exported(path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_exported_lists_are_those_recommend_gives(app, runner, tmp_path, suffix):
    out = tmp_path / f"lists{suffix}"
    result = runner.invoke(args=["export-recommendations", "--out", str(out), "--n", "7"])
    assert result.exit_code == 0, result.output
    frame = exported(out)
    assert frame["user_id"].nunique() == runtime_of(app).store.counts().users
    client = app.test_client()
    for user in [1, 17, 42, 100]:
        expected = client.get(f"/recommend?user_id={user}&n=7").get_json()
        rows = frame[frame["user_id"] == user].sort_values("rank")
        assert rows["product_id"].tolist() == [r["product_id"] for r in expected["recommendations"]]
        assert rows["score"].tolist() == [r["score"] for r in expected["recommendations"]]
        assert set(rows["model_version"]) == {expected["model_version"]}


def test_only_the_listed_users_are_exported_in_the_files_order(runner, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("user_id\n42\n7\n\n42\n999999\n")
    out = tmp_path / "lists.csv"
    result = runner.invoke(
        args=["export-recommendations", "--out", str(out), "--users", str(users)]
    )
    assert result.exit_code == 0, result.output
    frame = exported(out)
    assert list(dict.fromkeys(frame["user_id"])) == [42, 7, 999999]
    assert set(frame.loc[frame["user_id"] == 999999, "fallback_reason"]) == {"unknown_user"}


def test_an_export_to_an_existing_file_is_refused_without_force(runner, tmp_path):
    out = tmp_path / "lists.csv"
    out.write_text("keep me\n")
    refused = runner.invoke(args=["export-recommendations", "--out", str(out)])
    assert refused.exit_code == 2
    assert f"{out} exists; pass --force to replace it" in refused.output
    assert out.read_text() == "keep me\n"
    forced = runner.invoke(args=["export-recommendations", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert exported(out)["user_id"].nunique() == 100


@pytest.mark.parametrize(
    ("users_text", "message"),
    [
        ("1\n2\nx7\n", "users.txt, line 3: not a user id"),
        ("0\n", "users.txt, line 1: not a user id"),
    ],
)
def test_a_bad_users_file_is_refused_naming_the_line(runner, tmp_path, users_text, message):
    users = tmp_path / "users.txt"
    users.write_text(users_text)
    out = tmp_path / "lists.csv"
    result = runner.invoke(
        args=["export-recommendations", "--out", str(out), "--users", str(users)]
    )
    assert result.exit_code == 1
    assert message in result.output and "(nothing was exported)" in result.output
    assert not out.exists()


def test_an_export_to_another_format_is_refused(runner, tmp_path):
    result = runner.invoke(args=["export-recommendations", "--out", str(tmp_path / "lists.json")])
    assert result.exit_code == 2
    assert "the file name must end in .parquet or .csv" in result.output


def test_an_export_that_fails_part_way_leaves_nothing_behind(runner, tmp_path, monkeypatch):
    real = recommendation_export.recommend_users

    def fail_after_first_chunk(service, chunks, n):
        answers = real(service, chunks, n)
        yield next(answers)
        raise RuntimeError("the process died here")

    monkeypatch.setattr(recommendation_export, "recommend_users", fail_after_first_chunk)
    folder = tmp_path / "exports"
    folder.mkdir()
    result = runner.invoke(args=["export-recommendations", "--out", str(folder / "lists.parquet")])
    assert result.exit_code != 0
    assert list(folder.iterdir()) == []


# Each command that writes a file, with where it writes.
FILE_WRITERS = {
    "export-interactions": lambda target: ["export-interactions", str(target)],
    "export-recommendations": lambda target: ["export-recommendations", "--out", str(target)],
    "export-user": lambda target: ["export-user", "1", "--out", str(target)],
}


@pytest.mark.parametrize("command", FILE_WRITERS.values(), ids=list(FILE_WRITERS))
def test_a_file_that_cannot_be_written_is_one_line_and_leaves_nothing(runner, tmp_path, command):
    target = tmp_path / "out" / "written.csv"
    target.parent.mkdir()
    # Its temporary name taken by a folder: writing fails as a full disk would.
    (target.parent / f".{target.name}.partial").mkdir()
    result = runner.invoke(args=command(target))
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: cannot write {target}: Is a directory")
    assert result.output.count("\n") == 1
    assert not target.exists()


@pytest.mark.parametrize("name", ["export-interactions", "export-user"])
def test_a_file_in_a_folder_that_is_a_file_is_one_line(runner, tmp_path, name):
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "written.csv"
    result = runner.invoke(args=FILE_WRITERS[name](target))
    assert (result.exit_code, result.output) == (
        1,
        f"Error: cannot write {target}: Not a directory\n",
    )
