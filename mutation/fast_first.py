"""A pytest plugin of the mutation run: record each test's duration, run tests fastest first.

``mutation/run.py`` loads it (``-p fast_first``, this folder on ``PYTHONPATH``) in every copy:

- ``XTS_MUTATION_RECORD=FILE``: at the end of the session, write ``{node ID: seconds}`` of
  every test that ran (setup, call and teardown) to FILE as JSON (the baseline does this);
- ``XTS_MUTATION_ORDER=FILE``: run the collected tests in increasing order of the seconds
  FILE gives them, unknown ones last, ties in pytest's order. With ``-x`` a mutant is then
  killed by the quickest test that notices it, not by the first in the files' order;
- ``XTS_MUTATION_FAILED=FILE``: at the end of the session, write the node IDs of the tests
  that failed (in any phase), in order, to FILE as JSON: exact, where pytest's summary lines
  cut a node ID at its first blank.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_durations: dict[str, float] = {}
_failed: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Sort ``items`` by the recorded durations when ``XTS_MUTATION_ORDER`` names them."""
    order = os.environ.get("XTS_MUTATION_ORDER")
    if not order:
        return
    seconds = json.loads(Path(order).read_text(encoding="utf-8"))
    items.sort(key=lambda item: seconds.get(item.nodeid, float("inf")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up the phases of each test."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    if report.failed and report.nodeid not in _failed:
        _failed.append(report.nodeid)


def pytest_sessionfinish() -> None:
    """Write the durations and the failures where the environment asks for them."""
    record = os.environ.get("XTS_MUTATION_RECORD")
    if record:
        Path(record).write_text(json.dumps(_durations, indent=1) + "\n", encoding="utf-8")
    failed = os.environ.get("XTS_MUTATION_FAILED")
    if failed:
        Path(failed).write_text(json.dumps(_failed) + "\n", encoding="utf-8")
