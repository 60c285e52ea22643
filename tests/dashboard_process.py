"""`streamlit run app.py` as a child process on a free loopback port, for browser tests.

The caller's environment overrides pick the backend (e.g. QUORUM_BACKEND=ollama and
OLLAMA_HOST=<a chaos server>). Startup waits on the health endpoint; the process is
stopped on exit, also when the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.test_e2e_browser import Server, free_port, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Dashboard(Server):
    pid: int = 0  # the streamlit process, e.g. to sample its memory


@contextmanager
def dashboard(tmp_path: Path, env: Mapping[str, str]) -> Iterator[Dashboard]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir, stderr = tmp_path / "data", tmp_path / "streamlit.err"
    full_env = {
        **os.environ,
        "QUORUM_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    if "OPENAI_API_KEY" not in env:
        full_env.pop("OPENAI_API_KEY", None)
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.headless", "true", "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            command, cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=err
        )
        srv = Dashboard(url, data_dir, stderr, pid=proc.pid)
        try:
            wait_until_healthy(srv, proc)
            yield srv
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
