"""MovieLens loading: both layouts, autodetection, and bad files named by line."""

import csv

import numpy as np
import pandas as pd
import pytest

from recsys.data.catalog import load_catalog
from recsys.data.interactions import load_interactions
from recsys.data.loaders import load_dataset, relevant_mask
from recsys.data.log_files import iter_log
from recsys.errors import DataFileError, quote
from recsys.evaluation.model_params import load_model_params

RATINGS_CSV = "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,2.5,200\n2,10,5.0,150\n"
U_DATA = "1\t10\t4\t100\n1\t20\t2\t200\n2\t10\t5\t150\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ratings_csv_becomes_one_feedback_row_per_rating(tmp_path):
    dataset = load_dataset(write(tmp_path, "ratings.csv", RATINGS_CSV))
    feedback = dataset.feedback
    assert feedback["user_id"].tolist() == [1, 1, 2]
    assert feedback["product_id"].tolist() == [10, 20, 10]
    assert feedback["rating"].tolist() == [4.0, 2.5, 5.0]
    assert feedback["engagement"].tolist() == [4.0, 2.5, 5.0]
    assert feedback["clicks"].tolist() == [1, 1, 1]
    assert feedback["timestamp"].tolist() == [100, 200, 150]


def test_ratings_csv_is_detected_as_explicit_movielens(tmp_path):
    dataset = load_dataset(write(tmp_path, "ratings.csv", RATINGS_CSV))
    assert dataset.source_format == "movielens-csv"
    assert dataset.explicit_ratings
    assert dataset.rating_scale == (0.5, 5.0)
    assert dataset.has_timestamps


def test_u_data_is_detected_and_read_without_a_header(tmp_path):
    dataset = load_dataset(write(tmp_path, "u.data", U_DATA), "movielens")
    assert dataset.source_format == "movielens-udata"
    assert dataset.feedback[["user_id", "product_id", "rating"]].to_numpy().tolist() == [
        [1, 10, 4],
        [1, 20, 2],
        [2, 10, 5],
    ]


def test_blank_lines_are_skipped(tmp_path):
    dataset = load_dataset(write(tmp_path, "u.data", "1\t10\t4\t100\n\n2\t10\t5\t150\n"))
    assert len(dataset.feedback) == 2


def test_windows_line_endings_and_a_byte_order_mark_are_accepted(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"\xef\xbb\xbf" + RATINGS_CSV.replace("\n", "\r\n").encode())
    assert load_dataset(path).feedback["rating"].tolist() == [4.0, 2.5, 5.0]


def test_feedback_columns_have_numeric_types(tmp_path):
    feedback = load_dataset(write(tmp_path, "ratings.csv", RATINGS_CSV)).feedback
    assert feedback["user_id"].dtype == np.int64
    assert feedback["rating"].dtype == np.float64
    assert feedback["timestamp"].dtype == np.int64


def test_summary_counts_rows_users_and_products(tmp_path):
    summary = load_dataset(write(tmp_path, "ratings.csv", RATINGS_CSV)).summary()
    assert (summary["rows"], summary["users"], summary["products"]) == (3, 2, 2)


@pytest.mark.parametrize(
    ("threshold", "expected"), [(4, [True, False, True]), (5, [False] * 2 + [True])]
)
def test_relevance_is_a_rating_at_or_above_the_threshold(tmp_path, threshold, expected):
    feedback = load_dataset(write(tmp_path, "ratings.csv", RATINGS_CSV)).feedback
    assert relevant_mask(feedback, threshold).tolist() == expected


HEADER = "userId,movieId,rating,timestamp\n"
ID_RULE = "must be an integer from 1 to 9223372036854775807"


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        ("ratings.csv", "", 1, "the file is empty"),
        ("ratings.csv", HEADER, 2, "the file has a header but no ratings"),
        ("ratings.csv", "userId,itemId,rating,timestamp\n1,2,3,4\n", 1, "expected the header"),
        ("ratings.csv", "user,movie\n1,2\n", 1, "cannot tell the format"),
        (
            "ratings.csv",
            HEADER + "1,10,4,100\n1,20,4,100,7\n",
            3,
            "expected 4 comma-separated fields, found 5",
        ),
        (
            "ratings.csv",
            HEADER + "1,10,4,100\n1,20\n",
            3,
            "expected 4 comma-separated fields, found 2",
        ),
        ("u.data", "1\t10\t4\t100\n\n1\t20\t4\n", 3, "expected 4 tab-separated fields, found 3"),
        (
            "ratings.csv",
            HEADER + "1,10,4,100\nabc,20,4,100\n",
            3,
            f"userId {ID_RULE}, got 'abc'",
        ),
        (
            "ratings.csv",
            HEADER + "1,10,4,100\n0,20,4,100\n",
            3,
            f"userId {ID_RULE}, got '0'",
        ),
        ("ratings.csv", HEADER + "1,1.5,4,100\n", 2, f"movieId {ID_RULE}, got '1.5'"),
        (
            "ratings.csv",
            HEADER + "1,10,four,100\n",
            2,
            "rating must be a number from 0.5 to 5, got 'four'",
        ),
        (
            "ratings.csv",
            HEADER + "1,10,4,100\n1,20,7,100\n",
            3,
            "rating must be a number from 0.5 to 5, got '7'",
        ),
        (
            "ratings.csv",
            HEADER + "1,10,0,100\n",
            2,
            "rating must be a number from 0.5 to 5, got '0'",
        ),
        (
            "ratings.csv",
            HEADER + "1,10,4,-5\n",
            2,
            "timestamp must be a non-negative integer, got '-5'",
        ),
        (
            "ratings.csv",
            HEADER + "1,10,4,\n",
            2,
            "timestamp must be a non-negative integer, got ''",
        ),
        # the earliest bad line wins, whichever column is wrong on it
        ("ratings.csv", HEADER + "1,10,4,x\n1,y,4,100\n", 2, "timestamp must be"),
        (
            "ratings.csv",
            HEADER + "1,10,4,100\n2,10,4,100\n1,10,3,100\n",
            4,
            "user 1 rated movie 10 again (first on line 2)",
        ),
        ("u.data", "1\t10\t9\t100\n", 1, "rating must be a number from 1 to 5, got '9'"),
    ],
)
def test_bad_files_raise_an_error_naming_file_line_and_problem(tmp_path, name, text, line, problem):
    path = write(tmp_path, name, text)
    with pytest.raises(DataFileError) as raised:
        load_dataset(path)
    error = raised.value
    assert error.path == str(path)
    assert error.line == line
    assert problem in error.problem
    assert str(path) in str(error)


LOADERS = {
    "interactions": load_interactions,
    "dataset": load_dataset,
    "catalog": load_catalog,
    "model params": load_model_params,
    "log in chunks": lambda path: list(iter_log(path)),
}


def _missing(tmp_path):
    return tmp_path / "absent.csv"


def _directory(tmp_path):
    return tmp_path


def _latin1(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("user_id,product_clicked,purchased\n1,2,0 # café\n".encode("latin-1"))
    return path


def _blank(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text(" \n\n")
    return path


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
@pytest.mark.parametrize(
    ("make_file", "problem", "line"),
    [
        (_missing, "file not found", None),
        (_directory, "cannot read the file: Is a directory", None),
        (_latin1, "not UTF-8 text", 2),
        (_blank, "the file is empty", 1),
    ],
    ids=["missing", "directory", "latin-1", "blank"],
)
def test_every_loader_words_a_file_problem_the_same_way(tmp_path, loader, make_file, problem, line):
    path = make_file(tmp_path)
    with pytest.raises(DataFileError) as raised:
        loader(path)
    assert (raised.value.path, raised.value.problem, raised.value.line) == (
        str(path),
        problem,
        line,
    )


LONG = "x" * 300


@pytest.mark.parametrize("value", ["-1", LONG])
@pytest.mark.parametrize(
    ("loader", "content", "expected"),
    [
        (load_interactions, "user_id,product_clicked,purchased\n{},2,0\n", f"user_id {ID_RULE}"),
        (load_dataset, "userId,movieId,rating,timestamp\n{},2,4,100\n", f"userId {ID_RULE}"),
        (load_catalog, "product_id,name,category,price\n{},Lamp,Home,3\n", f"product_id {ID_RULE}"),
        (load_model_params, '{{"{}": {{}}}}', "unknown model"),
    ],
    ids=["interactions", "dataset", "catalog", "model params"],
)
def test_every_loader_quotes_an_offending_value_the_same_way(
    tmp_path, loader, content, expected, value
):
    path = tmp_path / "data.csv"
    path.write_text(content.format(value))
    with pytest.raises(DataFileError) as raised:
        loader(path)
    assert raised.value.problem.startswith(expected)
    assert quote(value) in raised.value.problem  # repr, capped at 100 characters


def test_an_interactions_file_is_refused_when_movielens_is_asked_for(tmp_path):
    path = write(tmp_path, "interactions.csv", "user_id,product_clicked,purchased\n1,2,0\n")
    with pytest.raises(DataFileError, match="expected a MovieLens file"):
        load_dataset(path, "movielens")


def test_an_unknown_format_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="expected one of auto, interactions, movielens"):
        load_dataset(write(tmp_path, "ratings.csv", RATINGS_CSV), "parquet")


# Past the csv module's field limit (131,072 characters).
OVERLONG = "x" * (csv.field_size_limit() + 1)


@pytest.mark.parametrize(
    "loader",
    [load_interactions, load_dataset, load_catalog, lambda path: list(iter_log(path))],
    ids=["interactions", "dataset", "catalog", "log in chunks"],
)
@pytest.mark.parametrize(
    "header",
    [
        OVERLONG,
        f"user_id,product_clicked,purchased,{OVERLONG}",
        f"product_id,name,category,{OVERLONG}",
        "\0" * (csv.field_size_limit() + 1),
    ],
    ids=["one long name", "a long extra column", "a long catalog column", "NUL bytes"],
)
def test_a_header_longer_than_the_csv_field_limit_is_refused_at_line_1(tmp_path, loader, header):
    path = write(tmp_path, "long.csv", f"{header}\n1,2,0,3\n")
    with pytest.raises(DataFileError) as raised:
        loader(path)
    assert raised.value.line == 1
    assert len(raised.value.problem) < 1000  # the long name is quoted, capped


def test_a_quoted_header_is_read_by_every_log_reader(tmp_path):
    path = write(tmp_path, "log.csv", '"user_id","product_clicked","purchased"\n1,2,0\n')
    (chunk,) = iter_log(path)
    pd.testing.assert_frame_equal(chunk.frame, load_interactions(path))


def test_a_bad_byte_past_the_first_block_is_named_by_its_line(tmp_path):
    path = tmp_path / "log.csv"
    # A three-byte character straddles the 1 MiB block boundary before the bad byte.
    rows = "1,2,0\n" * 200_000
    path.write_bytes(
        b"user_id,product_clicked,purchased\n" + rows.encode() + b"1,2,0 # \xe2\x82\xac\n\xff\n"
    )
    with pytest.raises(DataFileError) as raised:
        list(iter_log(path))
    assert (raised.value.problem, raised.value.line) == ("not UTF-8 text", 200_003)


TYPED_LOG = (
    "user_id,product_clicked,purchased,type,value,event_id\n"
    "1,2,0,view,,e-1\n"
    "1,3,,rating,5,\n"
    "2,2,1,purchase,,e-3\n"
    "2,3,0,,,\n"
    "3,1,,dislike,,\n"
)


def test_a_log_read_in_typed_chunks_is_the_frame_load_interactions_reads(tmp_path):
    path = write(tmp_path, "typed.csv", TYPED_LOG)
    chunks = [chunk.frame for chunk in iter_log(path, chunk_rows=2, typed=True)]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), load_interactions(path))


def test_a_typed_chunk_names_a_bad_line_by_its_file_line(tmp_path):
    path = write(tmp_path, "typed.csv", TYPED_LOG + "4,1,,rating,9,\n")
    with pytest.raises(DataFileError, match=r"line 7: value must be 1 to 5 on a rating, got '9'"):
        list(iter_log(path, chunk_rows=2, typed=True))


def test_a_log_read_in_untyped_chunks_names_the_columns_it_refuses_and_why(tmp_path):
    path = write(tmp_path, "typed.csv", TYPED_LOG)
    with pytest.raises(DataFileError) as raised:
        list(iter_log(path))
    assert raised.value.line == 1
    assert raised.value.problem == (
        "unexpected column(s) ['type', 'value', 'event_id']; expected the header "
        "user_id,product_clicked,purchased (optionally ,timestamp; not type,value,event_id: "
        "this reader streams clicks and purchases alone)"
    )
