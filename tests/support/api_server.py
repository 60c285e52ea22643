"""Quorum's API under a real uvicorn on a free loopback port, in a thread of the test.

`ApiServer` starts uvicorn with the app and waits (bounded) for it to listen; on exit it
asks uvicorn to stop and joins its thread, on failure too. The engine is the simulated
backend at a small time scale, its cache and history in the test's own directory.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from bench.plumbing import free_port
from engine.api.app import create_app
from engine.api.settings import ApiSettings
from engine.api.sources import SnapshotSource
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig
from engine.store.disk import ResultCache
from engine.store.history import History
from tests.support.serving import Running

START_DEADLINE_S = 30.0
TIME_SCALE = 0.02  # a parallel run of the five agents in a few tenths of a second


def simulated_engine(data_dir: Path, *, time_scale: float = TIME_SCALE) -> Engine:
    sim = SimConfig(profile="gpu", num_parallel=6, time_scale=time_scale)
    return Engine(
        BackendConfig(kind="simulated", sim=sim),
        cache=ResultCache(data_dir / "cache"),
        history=History(data_dir / "history.jsonl"),
    )


def simulated_app(
    data_dir: Path,
    settings: ApiSettings | None = None,
    *,
    time_scale: float = TIME_SCALE,
    source: SnapshotSource | None = None,
) -> FastAPI:
    return create_app(
        simulated_engine(data_dir, time_scale=time_scale),
        settings or ApiSettings(),
        defaults=RunSettings(),
        source=source or SnapshotSource("scenario", "cpu-saturation"),
    )


class ApiServer(Running):
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_DEADLINE_S
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited before it listened")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not listen within {START_DEADLINE_S:.0f} s")
            self._thread.join(timeout=0.02)  # wait on the server thread, not a bare sleep

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=START_DEADLINE_S)
