"""Shared pytest configuration: markers by folder, and CI's rule that nothing is skipped."""

from __future__ import annotations

import os

import pytest

# Each folder is one kind of test; its marker lets a run select kinds (``-m unit``).
FOLDER_MARKERS = ("unit", "integration", "system", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(config.rootpath).parts
        for folder in FOLDER_MARKERS:
            if folder in parts:
                item.add_marker(getattr(pytest.mark, folder))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test is a test that did not run: the run must say so by failing.
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        if reporter:
            reporter.write_line(
                f"CI=true: {skipped} test(s) skipped; a skip fails the run in CI.", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
