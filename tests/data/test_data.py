"""Loading interaction logs, and deriving ratings from them."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pandas as pd
import pytest

from recsys.data.interactions import load_interactions
from recsys.data.ratings import EventWeights, derive_ratings
from recsys.data.timestamps import TIMESTAMP_RULE, parse_timestamp, utc_now
from recsys.errors import DataFileError

HEADER = "user_id,product_clicked,purchased\n"
STAMPED_HEADER = "user_id,product_clicked,purchased,timestamp\n"
ID_RULE = "must be an integer from 1 to 9223372036854775807"


def test_a_valid_log_loads_as_integer_columns_in_file_order(write_csv):
    frame = load_interactions(write_csv(HEADER + "3,7,0\n1,2,1\n"))
    assert list(frame.columns) == ["user_id", "product_clicked", "purchased"]
    assert frame.to_numpy().tolist() == [[3, 7, 0], [1, 2, 1]]
    assert all(str(t) == "int64" for t in frame.dtypes)


def test_an_optional_timestamp_column_is_read_as_utc(write_csv):
    frame = load_interactions(
        write_csv(HEADER.strip() + ",timestamp\n1,2,0,2026-01-01T10:00:00+01:00\n1,3,1,\n")
    )
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T09:00:00")
    assert pd.isna(frame["timestamp"].iloc[1])


def test_a_byte_order_mark_and_windows_line_endings_are_accepted(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "3,7,0\n").replace("\n", "\r\n").encode())
    assert load_interactions(path).to_numpy().tolist() == [[3, 7, 0]]


def test_the_largest_64_bit_id_is_accepted(write_csv):
    frame = load_interactions(write_csv(HEADER + "9223372036854775807,1,0\n"))
    assert frame["user_id"].iloc[0] == 2**63 - 1


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("", 1, "the file is empty"),
        ("\n\n", 1, "the file is empty"),
        (HEADER, 2, "the file has a header but no interactions"),
        ("user_id,product_clicked\n1,2\n", 1, "missing column(s) ['purchased']"),
        (
            "user_id,product_clicked,purchased,price\n1,2,0,3\n",
            1,
            "unexpected column(s) ['price']",
        ),
        ("product_clicked,user_id,purchased\n1,2,0\n", 1, "columns out of order"),
        (HEADER + "1,2,0\nx,2,0\n", 3, f"user_id {ID_RULE}, got 'x'"),
        (HEADER + "1,2.5,0\n", 2, f"product_clicked {ID_RULE}, got '2.5'"),
        (HEADER + "0,2,0\n", 2, f"user_id {ID_RULE}, got '0'"),
        (HEADER + "-4,2,0\n", 2, f"user_id {ID_RULE}, got '-4'"),
        (HEADER + "9223372036854775808,2,0\n", 2, f"user_id {ID_RULE}"),
        (HEADER + "1,2,2\n", 2, "purchased must be 0 or 1, got '2'"),
        (HEADER + "1,2,yes\n", 2, "purchased must be 0 or 1, got 'yes'"),
        (HEADER + "1,2,0\n1,2\n", 3, "purchased is missing"),
        (HEADER + "1,2,0\n\n1,2,0\n", 3, "blank line"),
        (HEADER + "1,2,0\n1,2,0,9\n", 3, "expected 3 fields, found 4"),
        (HEADER + "1,2,0,9\n1,2,0\n", 2, "expected 3 fields, found 4"),
        (HEADER + '1,2,0\n1,2,0\n"1,2,0\n1,2,0\n', 4, "quoted field starts on this line"),
        (HEADER + "1,2,0\n5,x,0\n0,2,0\n", 3, "product_clicked must be an integer"),
        (
            STAMPED_HEADER + "1,2,0,\n1,2,0,soon\n",
            3,
            f"timestamp must be {TIMESTAMP_RULE}, got 'soon'",
        ),
    ],
)
def test_a_bad_file_is_reported_with_file_line_and_problem(write_csv, content, line, problem):
    path = write_csv(content)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert caught.value.line == line
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}, line {line}: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-01-01T10:00:00",  # no offset: which instant is unknown
        "2026-01-01 10:00",
        "2026-01-01",  # a date alone
        "1969-12-31T23:59:59Z",  # before 1970
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
        "2026-02-30T10:00:00Z",  # no such day
        "9999-12-31T23:59:59-14:00",  # overflows while converting to UTC
    ],
)
def test_timestamps_follow_the_projects_rule(write_csv, stamp):
    path = write_csv(STAMPED_HEADER + "1,2,0,2026-01-01T10:00:00Z\n" + f"1,3,0,{stamp}\n")
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert caught.value.line == 3
    assert caught.value.problem == f"timestamp must be {TIMESTAMP_RULE}, got {stamp!r}"


def test_a_timestamp_more_than_a_day_ahead_is_refused(write_csv):
    ahead = (utc_now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(DataFileError, match="from 1970-01-01 to one day after now"):
        load_interactions(write_csv(STAMPED_HEADER + f"1,2,0,{ahead}\n"))


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-29T10:00:00Z",
        "2026-11-29T10:00:00z",
        "2026-11-29 10:00+0100",
        "2026-11-29T10:00:00.5+01:00",
        "2026-11-29T10:00:00.123456-05:30",
        "2026-11-29T10:00:00-00:00",
        "1970-01-01T00:00:00Z",
    ],
)
def test_the_csv_loader_reads_timestamps_as_the_api_does(write_csv, stamp):
    frame = load_interactions(write_csv(STAMPED_HEADER + f"1,2,0,{stamp}\n"))
    assert frame["timestamp"].iloc[0] == pd.Timestamp(parse_timestamp(stamp))


def test_a_missing_file_is_reported_by_name(tmp_path):
    with pytest.raises(DataFileError, match=r"nowhere\.csv: file not found"):
        load_interactions(tmp_path / "nowhere.csv")


def test_a_binary_file_is_reported_as_not_utf8_text(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFileError, match="not UTF-8 text"):
        load_interactions(path)


def _log(rows):
    return pd.DataFrame(rows, columns=["user_id", "product_clicked", "purchased"])


def test_ratings_count_clicks_and_purchases_per_pair():
    feedback = derive_ratings(_log([(1, 5, 0), (1, 5, 1), (1, 6, 0), (2, 5, 0)]))
    columns = ["user_id", "product_id", "clicks", "purchases", "rating"]
    assert feedback[columns].to_numpy().tolist() == [
        [1, 5, 2, 1, 4.0],
        [1, 6, 1, 0, 1.0],
        [2, 5, 1, 0, 1.0],
    ]


def test_ratings_are_clipped_to_one_to_five():
    feedback = derive_ratings(_log([(1, 5, 1)] * 4))
    assert feedback["engagement"].iloc[0] == 12.0
    assert feedback["rating"].iloc[0] == 5.0


def test_click_and_purchase_weights_are_configurable():
    feedback = derive_ratings(_log([(1, 5, 0), (1, 5, 1)]), EventWeights(click=0.5, purchase=2))
    assert feedback["rating"].iloc[0] == pytest.approx(2.5)


@pytest.mark.parametrize(
    "weights",
    [EventWeights(), EventWeights(click=0.5, purchase=3.5), EventWeights(click=2, purchase=2)],
)
def test_more_engagement_never_lowers_the_rating(weights):
    def rating(clicks: int, purchases: int) -> float:
        rows = [(1, 1, 1)] * purchases + [(1, 1, 0)] * (clicks - purchases)
        return derive_ratings(_log(rows), weights)["rating"].iloc[0]

    grid = [(c, p) for c, p in itertools.product(range(1, 7), range(0, 7)) if p <= c]
    for clicks, purchases in grid:
        if clicks + 1 <= 6:
            assert rating(clicks + 1, purchases) >= rating(clicks, purchases)
        if purchases + 1 <= clicks:
            assert rating(clicks, purchases + 1) >= rating(clicks, purchases)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"click": -1}, "click must be a finite number >= 0"),
        ({"purchase": float("nan")}, "purchase must be a finite number >= 0"),
        ({"purchase": "2"}, "purchase must be a finite number >= 0"),
        ({"view": True}, "view must be a finite number >= 0"),
        ({"dislike": 1}, "dislike must be a finite number <= 0"),
    ],
)
def test_bad_weights_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventWeights(**kwargs)
