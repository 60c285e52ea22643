"""The process's shared simulated servers: one running server per SimConfig.

The embedded backend (a simulated BackendConfig without a URL) asks here when it builds
a backend (engine/service.py), so every run, dashboard session and API request of one
config in a process talks to one server, started on first use and stopped at exit.
"""

from __future__ import annotations

import atexit
import threading

from engine.simulator.config import SimConfig
from engine.simulator.server import SimulatedOllamaServer

# A dashboard user who tries many settings would leave a server per setting behind, so
# only this many of the most recently used stay up.
SHARED_MAX = 8

_shared: dict[SimConfig, SimulatedOllamaServer] = {}
_shared_lock = threading.Lock()


def shared_server(config: SimConfig) -> SimulatedOllamaServer:
    """The process's running server for `config`, started on first use, stopped at exit.

    Shared: a `set_fault` on it is seen by every other user of the same config. Only the
    `SHARED_MAX` most recently used stay up; an evicted one is stopped, and asking for its
    config again starts a new one (on a new port).
    """
    evicted: list[SimulatedOllamaServer] = []
    with _shared_lock:
        server = _shared.pop(config, None)
        if server is None or not server.running:
            server = SimulatedOllamaServer(config).start()
        _shared[config] = server  # re-inserted: dicts keep insertion order, newest last
        while len(_shared) > SHARED_MAX:
            evicted.append(_shared.pop(next(iter(_shared))))
    for old in evicted:
        old.stop()
    return server


def running_configs() -> list[SimConfig]:
    """The configs whose shared server is up, least recently used first (nothing started)."""
    with _shared_lock:
        return [config for config, server in _shared.items() if server.running]


def _stop_shared() -> None:
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.stop()


atexit.register(_stop_shared)
