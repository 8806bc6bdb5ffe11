"""An answer's JSON body: what /recommend sends, encoded once per answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.online.service import RecommendationAnswer, RecommendedProduct, compact_json


def an_answer(name: str | None = "Café Crème", score: float = 0.5) -> RecommendationAnswer:
    return RecommendationAnswer(
        17, "svd", [RecommendedProduct(3, name, "Home", score)], "v00001-20261130T000000Z"
    )


def test_a_body_is_the_answers_json_shape_on_one_line():
    body = an_answer().json_body
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    assert json.loads(body) == an_answer().to_dict()


def test_non_ascii_names_are_sent_as_utf8_and_read_back_unchanged():
    body = an_answer("Café Crème ☕").json_body
    assert "Café Crème ☕".encode() in body
    assert json.loads(body)["recommendations"][0]["name"] == "Café Crème ☕"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (np.float64(0.25), b"0.25"),
        (np.float32(0.5), b"0.5"),
        (np.int64(7), b"7"),
        (np.bool_(True), b"true"),
        (float("nan"), b"null"),
    ],
)
def test_numbers_of_any_kind_are_written_as_json_numbers(value, written):
    assert compact_json({"value": value}) == b'{"value":' + written + b"}\n"
