"""Shared test plumbing: find the browser for the e2e test, and say loudly when it is missing.

A skipped browser test is easy to miss in a line of dots, so a skip is recorded here and
repeated as a banner at the very end of the session. Where the components must be there
(`.ci/run` installs every one and sets QUORUM_REQUIRE_COMPONENTS=1), a missing one fails
the test instead: CI cannot turn green by skipping what it was meant to run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ENV = "QUORUM_CHROMIUM"  # overrides the executable (a wrong path tests the skip)
REQUIRE_ENV = "QUORUM_REQUIRE_COMPONENTS"  # "1": a missing real component is a failure
_SKIPS = pytest.StashKey[list[str]]()


def components_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def find_chromium() -> tuple[str | None, str]:
    """(path to Debian's chromium, or None and why it is unusable)."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        path = Path(override).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path), ""
        return None, f"chromium not found (${CHROMIUM_ENV}={override} is not an executable file)"
    found = shutil.which("chromium")
    if found:
        return found, ""
    if DEBIAN_CHROMIUM.is_file() and os.access(DEBIAN_CHROMIUM, os.X_OK):
        return str(DEBIAN_CHROMIUM), ""
    return None, "Debian chromium not found"


@pytest.fixture
def chromium_executable(request: pytest.FixtureRequest) -> str:
    """The browser for the e2e test; skips (and records the skip for the banner) without it."""
    path, why = find_chromium()
    if path is not None and importlib.util.find_spec("playwright") is None:
        path, why = None, "the playwright Python package is not installed (requirements-dev.txt)"
    if path is None:
        reason = f"{why} — install it with 'apt-get install chromium' (see README)"
        if components_required():
            pytest.fail(f"BROWSER TEST CANNOT RUN (${REQUIRE_ENV}=1): {reason}", pytrace=False)
        request.config.stash.setdefault(_SKIPS, []).append(reason)
        pytest.skip(f"BROWSER TEST SKIPPED: {reason}")
    return path


_LOUD_SKIPS = pytest.StashKey[list[str]]()  # other real components (prometheus, …)


def skip_loudly(request: pytest.FixtureRequest, message: str) -> NoReturn:
    """Skip, and repeat `message` as a banner at the end of the session; fail instead where
    the components are required (CI)."""
    if components_required():
        pytest.fail(f"{message} (${REQUIRE_ENV}=1: a required component is missing)", pytrace=False)
    request.config.stash.setdefault(_LOUD_SKIPS, []).append(message)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons = terminalreporter.config.stash.get(_SKIPS, [])
    for reason in dict.fromkeys(reasons):  # once each, in order
        terminalreporter.write_sep("!", red=True, bold=True)
        terminalreporter.write_line(f"!!! BROWSER TEST SKIPPED: {reason} !!!", red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
    messages = terminalreporter.config.stash.get(_LOUD_SKIPS, [])
    for message in dict.fromkeys(messages):
        terminalreporter.write_sep("!", red=True, bold=True)
        terminalreporter.write_line(f"!!! {message} !!!", red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
