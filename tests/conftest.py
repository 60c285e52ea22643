"""Fixtures every test module may use, and the end-of-session banner for skipped components.

The fixtures live in tests/support/ next to what they start (a real browser, redis-server,
Prometheus, llama.cpp's server); importing them here is what offers them to every test
module, so no test module imports another, or a fixture, by name. A component that is
missing skips its tests loudly, or fails them under QUORUM_REQUIRE_COMPONENTS=1
(tests/support/components.py).
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import pytest

from tests.support.browser import browser as browser
from tests.support.browser import page as page
from tests.support.components import banners, chromium_or_skip
from tests.support.llama_server import llama1 as llama1
from tests.support.llama_server import llama5 as llama5
from tests.support.llama_server import llama_binaries as llama_binaries
from tests.support.prometheus_stack import prom_binaries as prom_binaries
from tests.support.prometheus_stack import promstack as promstack
from tests.support.prometheus_stack import shared_promstack as shared_promstack
from tests.support.redis_server import own_redis as own_redis
from tests.support.redis_server import redis_server as redis_server
from tests.support.redis_server import redis_url as redis_url


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped by SIGTERM (`timeout`, a cancelled CI job) dies without tearing down
    # its fixtures, and the servers they started (llama.cpp, redis, Prometheus, a
    # dashboard) outlive it. As an interrupt, pytest stops them on its way out.
    del config
    signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture
def chromium_executable(request: pytest.FixtureRequest) -> str:
    """The browser for the e2e tests; skips (and records the skip for the banner) without it."""
    return chromium_or_skip(request)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine's cache and history in this test's own directory, and no roster file
    (a module that wants it for every test: `pytest.mark.usefixtures("data_dir")`)."""
    monkeypatch.setenv("QUORUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QUORUM_CONFIG", str(tmp_path / "no-quorum.toml"))
    return tmp_path / "data"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in banners(terminalreporter.config):
        terminalreporter.write_sep("!", red=True, bold=True)
        terminalreporter.write_line(f"!!! {line} !!!", red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
