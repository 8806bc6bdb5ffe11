"""The echo of what a caller sent, in error messages: short, and cheap whatever its size."""

from __future__ import annotations

import pytest

from recsys.errors import MAX_ECHO_CHARS, quote


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "'abc'"),
        ([1, "b"], "[1, 'b']"),
        ("1" * 4301, "'" + "1" * 96 + "... (4303 characters)"),
        ("\x00" * (1 << 20), "'" + "\\x00" * 24 + "... (more than 65536 characters)"),
        (["a", "b" * (1 << 30)], "['a', '" + "b" * 90 + "... (more than 65536 characters)"),
    ],
    ids=["short", "list", "long", "a megabyte of NUL", "a gigabyte name in a header"],
)
def test_a_quoted_value_is_its_repr_cut_to_about_a_hundred_characters(value, expected):
    quoted = quote(value)
    assert quoted == expected
    assert len(quoted) <= MAX_ECHO_CHARS + 40
