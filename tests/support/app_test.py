"""The dashboard under Streamlit's AppTest (no browser): on the simulated backend, its data
in the test's directory; pages are switched to by their file (`page_script`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import FileUploader

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app.py"
APP_IN_CHARGE = Path(__file__).resolve().parent / "dashboard_app.py"
TIMEOUT_S = 60  # generous: a 2-core CI machine runs five agents and a consolidation


def page_script(name: str) -> str:
    """pages/<name>.py, for `AppTest.switch_page` (an absolute path: the main script is
    tests/support/dashboard_app.py or app.py, and the page is the same file for both)."""
    return str(REPO / "pages" / f"{name}.py")


def new_app(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    backend: str = "simulated",
    server_like_navigation: bool = True,
) -> AppTest:
    """The dashboard with its data in `tmp_path` and a simulated server at 1/100 speed."""
    monkeypatch.setenv("QUORUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QUORUM_BACKEND", backend)
    monkeypatch.setenv("QUORUM_SIM_TIME_SCALE", "0.01")
    monkeypatch.setenv("QUORUM_CONFIG", str(tmp_path / "no-roster.toml"))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # dashboard_app.py (beside this file) runs app.py with navigation in charge, as a real
    # server after its first request; app.py itself starts each AppTest run in the legacy
    # pages mode.
    script = APP_IN_CHARGE if server_like_navigation else APP
    return AppTest.from_file(str(script), default_timeout=TIMEOUT_S)


def uploader(at: AppTest) -> FileUploader:
    (widget,) = at.sidebar.get("file_uploader")
    assert isinstance(widget, FileUploader)
    return widget
