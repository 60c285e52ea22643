"""A simulated Ollama server: the product's embedded default backend.

Like Grafana's TestData source, it lets Quorum run with no model installed. It is a real
HTTP/1.1 server on loopback (engine/simulator/handler.py speaks Ollama's API, or
llama.cpp's `/props` and `/slots` in llama.cpp mode) over a timing model
(engine/simulator/model.py: model loads, slots with a prefix cache, compute they share),
answering from the USE-method rules (engine/simulator/answers.py). What it is comes from
its SimConfig (engine/simulator/config.py) and profile (engine/simulator/profiles.py).

This module is its lifecycle: bind, start, stop. The process's shared servers, one per
config, are in engine/simulator/registry.py.
"""

from __future__ import annotations

import threading

from engine.simulator.config import SimConfig
from engine.simulator.handler import SimHTTPServer
from engine.simulator.model import POLL_S, SimStats, TimingModel
from engine.simulator.profiles import SimProfile


class SimulatedOllamaServer:
    """One simulated Ollama on `host:port` (port 0: any free port). Bound on construction."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.model = TimingModel(config)
        self._httpd = SimHTTPServer((host, port), self.model)
        self._thread: threading.Thread | None = None

    @property
    def profile(self) -> SimProfile:
        return self.model.profile

    @property
    def stats(self) -> SimStats:
        return self.model.stats

    @property
    def started_at(self) -> str:
        return self._httpd.started_at

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.model.stopping

    def start(self) -> SimulatedOllamaServer:
        if self.model.stopping:
            raise RuntimeError("a stopped SimulatedOllamaServer cannot be restarted")
        if self._thread is None:
            # A short poll interval keeps stop() prompt.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": POLL_S},
                name=f"simulated-ollama-{self.url}", daemon=True,
            )  # fmt: skip
            self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung and queued requests, close every connection, stop serving."""
        if not self.model.stop():
            return
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.connections.close_all()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_stopped(self, timeout_s: float) -> bool:
        """Block until the server is stopped (False after `timeout_s`)."""
        return self.model.wait_stopped(timeout_s)

    def __enter__(self) -> SimulatedOllamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(self, agent: str, kind: str | None) -> None:
        self.model.set_fault(agent, kind)

    def fault_for(self, agent: str) -> str | None:
        return self.model.fault_for(agent)


def serve_forever(config: SimConfig, host: str, port: int) -> None:
    """Serve until Ctrl-C (for `python -m engine serve-simulated`)."""
    with SimulatedOllamaServer(config, host, port) as server:
        faults = ", ".join(f"{agent}={kind}" for agent, kind in config.faults)
        print(
            f"Simulated Ollama ({config.profile}, {config.slots} slot(s), "
            f"time scale {config.time_scale:g}{', faults: ' + faults if faults else ''}) "
            f"at {server.url} — Ctrl-C to stop",
            flush=True,
        )
        try:
            while server.running:
                server.wait_stopped(1.0)
        except KeyboardInterrupt:
            pass
