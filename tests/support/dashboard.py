"""`streamlit run app.py` as a child process on a free loopback port, for browser tests.

The caller's environment overrides pick the backend (e.g. QUORUM_BACKEND=ollama and
OLLAMA_HOST=<a chaos server>). Startup waits on the health endpoint (polling it while
waiting on the process, so a crash fails at once); the process is stopped on exit, also
when the test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.plumbing import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    stderr: Path
    pid: int = 0  # the streamlit process, e.g. to sample its memory

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]


def simulated_env(time_scale: str) -> dict[str, str]:
    """The environment of a dashboard on its embedded simulated server at `time_scale`."""
    return {
        "QUORUM_BACKEND": "simulated",
        "QUORUM_SIM_TIME_SCALE": time_scale,
        "OLLAMA_HOST": "127.0.0.1:9",  # nothing listens on the discard port
    }


def wait_until_healthy(server: Server, proc: subprocess.Popen[bytes]) -> None:
    """Poll /_stcore/health until it says ok; fail with the server's stderr otherwise."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"{server.url}/_stcore/health")
                if response.status_code == 200 and response.text.strip() == "ok":
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            try:  # waits on the process (20 ms at most between attempts), not a bare sleep
                code = proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"streamlit exited with {code} before it was healthy:\n{server.log()}")
    pytest.fail(f"streamlit not healthy after {STARTUP_DEADLINE_S:.0f} s ({last}):\n{server.log()}")


@contextmanager
def dashboard(
    tmp_path: Path, env: Mapping[str, str], *, drop: Iterable[str] = ()
) -> Iterator[Server]:
    """The dashboard with `env` over this process's environment, data in `tmp_path`.
    OPENAI_API_KEY (unless `env` sets it) and the names in `drop` are removed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir, stderr = tmp_path / "data", tmp_path / "streamlit.err"
    full_env = {
        **os.environ,
        "QUORUM_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    for name in (*drop, *(() if "OPENAI_API_KEY" in env else ("OPENAI_API_KEY",))):
        full_env.pop(name, None)
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.headless", "true", "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    with (tmp_path / "streamlit.out").open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=full_env, stdout=out, stderr=err)
        srv = Server(url, data_dir, stderr, pid=proc.pid)
        try:
            wait_until_healthy(srv, proc)
            yield srv
        finally:
            stop_process(proc)
