"""pytest plugin of the mutation harness (loaded with `-p outcome_plugin`): records the first test that failed
on an assertion (and stops the run there) and every test that failed by raising something else, then writes
both to the JSON file named by PAPERZOO_MUTATION_REPORT."""

from __future__ import annotations

import json
import os

import pytest
from _pytest.outcomes import Failed

SEEN: dict = {"killed": None, "crashed": []}


def describe(excinfo) -> str:
    text = str(excinfo.value).strip().splitlines()
    return f"{excinfo.typename}: {text[0] if text else ''}"[:240]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    if call.excinfo is None:  # a strict xfail that passed: it noticed a change, but checks no property
        SEEN["crashed"].append({"test": item.nodeid, "detail": f"{report.when}: XPASS(strict)"})
        return
    # An assertion (plain assert, numpy/torch assert_close, pytest.approx) or pytest.fail / a pytest.raises
    # that saw nothing raised: the test checked something and it was false.
    checked = report.when == "call" and isinstance(call.excinfo.value, AssertionError | Failed)
    if checked and SEEN["killed"] is None:
        SEEN["killed"] = {"test": item.nodeid, "detail": describe(call.excinfo)}
        item.session.shouldstop = "killed: a test failed on an assertion"
    elif not checked:
        SEEN["crashed"].append({"test": item.nodeid, "detail": f"{report.when}: {describe(call.excinfo)}"})


def pytest_collectreport(report):
    if report.failed:
        SEEN["crashed"].append({"test": report.nodeid, "detail": f"collection: {str(report.longrepr)[-200:]}"})


def pytest_sessionfinish(session):
    path = os.environ.get("PAPERZOO_MUTATION_REPORT")
    if path:
        with open(path, "w") as handle:
            json.dump(SEEN, handle)
