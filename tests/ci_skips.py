"""Under .ci/run (``RECSYS_CI=1``) a skipped test is a failed test, unless allowed below.

Tests skip with a reason when a service or data set is missing, so that they
pass on a machine that lacks it; CI provides every one, and there a skip
would hide a test the README promises. A test that may still skip in CI is
listed in ``CI_MAY_SKIP`` by node id (parameters included), with the reason.

pytest loads this module as a plugin (see conftest.py).
"""

from __future__ import annotations

import os

import pytest

# node id -> why it may skip under .ci/run. Empty: nothing may.
CI_MAY_SKIP: dict[str, str] = {}


def skip_reason(report: pytest.TestReport) -> str:
    """Return the reason a skipped report gives."""
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if os.environ.get("RECSYS_CI") != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    if item.nodeid in CI_MAY_SKIP:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under .ci/run (RECSYS_CI=1), where no test may skip: {skip_reason(report)} "
        "(provide what it needs, or allow it in tests/ci_skips.py with the reason)"
    )
