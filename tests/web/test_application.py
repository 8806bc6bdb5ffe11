"""The service's Flask class: each hook and view is checked for ``async`` once, not per request."""

from __future__ import annotations

import pytest

from recsys.web.application import ServiceFlask


def test_a_plain_function_is_passed_through_and_remembered():
    app = ServiceFlask(__name__)

    def view():
        return "ok"

    assert app.ensure_sync(view) is view
    assert view in app._plain_functions


def test_an_object_that_cannot_be_weakly_referenced_is_still_passed_through():
    app = ServiceFlask(__name__)
    assert app.ensure_sync(len) is len  # a built-in function has no weak references
    assert app.ensure_sync(len) is len


def test_a_coroutine_function_still_goes_to_flask_and_is_never_remembered():
    app = ServiceFlask(__name__)

    async def view():
        return "ok"

    # Without asgiref Flask says it cannot run it, as it would without this class.
    with pytest.raises(RuntimeError, match="async"):
        app.ensure_sync(view)
    assert view not in app._plain_functions


def test_a_function_made_for_one_request_is_forgotten_with_it():
    app = ServiceFlask(__name__)

    def made():
        return "ok"

    app.ensure_sync(made)
    del made
    assert len(app._plain_functions) == 0
