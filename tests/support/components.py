"""The real components some tests need (Chromium, redis-server, Prometheus, llama.cpp's
server), and what happens when one is missing.

A skipped component test is easy to miss in a line of dots, so a skip is recorded here and
repeated as a banner at the very end of the session (tests/conftest.py prints it). Where
the components must be there (`.ci/run` installs every one and sets
QUORUM_REQUIRE_COMPONENTS=1), a missing one fails the test instead: CI cannot turn green by
skipping what it was meant to run.
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
BROWSER_SKIPS = pytest.StashKey[list[str]]()
LOUD_SKIPS = pytest.StashKey[list[str]]()  # other real components (prometheus, …)


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


def chromium_or_skip(request: pytest.FixtureRequest) -> str:
    """The browser for the e2e tests; skips (and records the skip for the banner) without it."""
    path, why = find_chromium()
    if path is not None and importlib.util.find_spec("playwright") is None:
        path, why = None, "the playwright Python package is not installed (requirements-dev.txt)"
    if path is None:
        reason = f"{why} — install it with 'apt-get install chromium' (see README)"
        if components_required():
            pytest.fail(f"BROWSER TEST CANNOT RUN (${REQUIRE_ENV}=1): {reason}", pytrace=False)
        request.config.stash.setdefault(BROWSER_SKIPS, []).append(reason)
        pytest.skip(f"BROWSER TEST SKIPPED: {reason}")
    return path


def skip_loudly(request: pytest.FixtureRequest, message: str) -> NoReturn:
    """Skip, and repeat `message` as a banner at the end of the session; fail instead where
    the components are required (CI)."""
    if components_required():
        pytest.fail(f"{message} (${REQUIRE_ENV}=1: a required component is missing)", pytrace=False)
    request.config.stash.setdefault(LOUD_SKIPS, []).append(message)
    pytest.skip(message)


def banners(config: pytest.Config) -> list[str]:
    """The end-of-session banner lines: each recorded skip once, in order."""
    browser = config.stash.get(BROWSER_SKIPS, [])
    loud = config.stash.get(LOUD_SKIPS, [])
    return [f"BROWSER TEST SKIPPED: {reason}" for reason in dict.fromkeys(browser)] + list(
        dict.fromkeys(loud)
    )
