"""The headers every answer carries, whatever it is: the security headers and one request id."""

from __future__ import annotations

import pytest

from recsys.web.answer_headers import AnswerHeaders
from tests.builders import BUNDLED_LOG


def assert_carries_the_answer_headers(headers) -> None:
    assert headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert headers.getlist("Cache-Control") == ["no-store"]
    assert len(headers.getlist("X-Request-ID")) == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/recommend?user_id=1", 200),
        ("GET", "/recommend?user_id=x", 400),
        ("GET", "/recommend?user_id=1&category=%01", 400),
        ("GET", "/nowhere", 404),
        ("POST", "/popular", 405),
        ("POST", "/interactions", 415),
    ],
)
def test_every_answer_carries_the_security_headers_and_one_request_id(
    bundled_client, method, path, status
):
    kwargs = {"data": "a=1", "content_type": "text/plain"} if path == "/interactions" else {}
    response = bundled_client.open(path, method=method, **kwargs)
    assert response.status_code == status
    assert_carries_the_answer_headers(response.headers)


def test_a_crash_answer_carries_them_too(app_factory):
    app = app_factory(init=False, DATA_PATH=str(BUNDLED_LOG))

    @app.get("/test-crash")
    def crash():
        raise RuntimeError("boom")

    response = app.test_client().get("/test-crash", headers={"X-Request-ID": "trace-7"})
    assert response.status_code == 500
    assert_carries_the_answer_headers(response.headers)
    assert response.headers["X-Request-ID"] == "trace-7"


def test_an_answer_that_says_how_long_it_may_be_cached_keeps_its_own_cache_control(
    bundled_client,
):
    response = bundled_client.get("/dashboard/charts/long_tail.png")
    assert response.status_code == 200
    (cache_control,) = response.headers.getlist("Cache-Control")
    assert cache_control.startswith("private, max-age=")


def test_a_header_only_the_layer_sets_is_replaced_when_a_view_set_it():
    def view(environ, start_response):
        start_response(
            "200 OK",
            [("x-request-id", "the view's"), ("X-Content-Type-Options", "sniff")],
        )
        return [b""]

    sent = []
    wrapped = AnswerHeaders(view)
    environ = {"HTTP_X_REQUEST_ID": "trace-9"}
    wrapped(environ, lambda status, headers, exc_info=None: sent.extend(headers))
    assert sent == [
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
        ("X-Request-ID", "trace-9"),
    ]
    assert environ["recsys.request_id"] == "trace-9"  # where the log records find it
