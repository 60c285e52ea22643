"""Real Prometheus for tests: Debian's `prometheus` and `prometheus-node-exporter` on free
loopback ports, plus a tiny service exposing a latency histogram and a request counter
(the `prometheus-client` package).

Prometheus scrapes every second into a temporary storage dir. Every wait is on a real
condition with a bounded deadline: a readiness endpoint, a query answering, a process
exiting (the pause between polls is `Popen.wait` on Prometheus, so a crash fails at
once). Everything started here is stopped at the end, on failure too.

Without the binaries a test skips LOUDLY (a banner at the end of the session, like the
browser test); CI installs them (`.ci/run`). Its fixtures are offered to every test
module by tests/conftest.py.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bench.plumbing import free_port, stop_process
from tests.support.components import skip_loudly

PROMETHEUS = "prometheus"
NODE_EXPORTERS = ("prometheus-node-exporter", "node_exporter")  # Debian's name, upstream's
START_DEADLINE_S = 60.0  # a loaded 2-core machine starts Prometheus in a few seconds
POLL_S = 0.1  # the pause between polls, spent waiting on the Prometheus process
# The collectors the snapshot reads; the rest only make each 1 s scrape slower.
NODE_COLLECTORS = ("cpu", "loadavg", "meminfo", "vmstat", "diskstats", "filesystem",
                   "netdev", "netclass", "uname", "time")  # fmt: skip
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)  # seconds


def find_binaries() -> tuple[str | None, str | None]:
    exporter = next((p for p in map(shutil.which, NODE_EXPORTERS) if p), None)
    return shutil.which(PROMETHEUS), exporter


@pytest.fixture(scope="session")
def prom_binaries(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(prometheus, node_exporter) paths; a loud skip without them."""
    prom, exporter = find_binaries()
    missing = [
        n for n, p in (("prometheus", prom), ("prometheus-node-exporter", exporter)) if not p
    ]
    if prom is None or exporter is None:
        skip_loudly(
            request,
            f"PROMETHEUS TESTS SKIPPED: {' and '.join(missing)} not found — install them with "
            "'apt-get install prometheus prometheus-node-exporter' (see README)",
        )
        raise AssertionError("unreachable")  # skip_loudly raises pytest's Skipped
    return prom, exporter


# --- the tiny service ----------------------------------------------------------------------


class Service:
    """An HTTP service on loopback with its own metrics registry.

    GET /work?ms=30&code=200 records one request of 30 ms with that status code (the
    latency is given, so a test knows exactly what the histogram holds). GET /metrics
    is the exposition Prometheus scrapes.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "http_requests", "Requests by status code", ["code"], registry=self.registry
        )
        for code in ("200", "500"):  # both series exist from the first scrape, at 0
            self.requests.labels(code=code)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/metrics":
                    body, status = generate_latest(service.registry), 200
                    ctype = CONTENT_TYPE_LATEST
                elif parts.path == "/work":
                    query = parse_qs(parts.query)
                    ms = float(query.get("ms", ["10"])[0])
                    status = int(query.get("code", ["200"])[0])
                    service.latency.observe(ms / 1000)
                    service.requests.labels(code=str(status)).inc()
                    body, ctype = b"done\n", "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- the stack ----------------------------------------------------------------------------


@dataclass
class PromStack:
    """node_exporter (job "node"), the service (job "service") and Prometheus over both."""

    prometheus_bin: str
    exporter_bin: str
    workdir: Path
    prom_port: int = field(default_factory=free_port)
    exporter_port: int = field(default_factory=free_port)
    service: Service = field(default_factory=Service)
    # More YAML for prometheus.yml: scrape_configs entries, then top-level sections
    # (rule_files, alerting) — for a test that adds its own targets and rules.
    extra_scrapes: str = ""
    extra_config: str = ""
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.prom_port}"

    @property
    def node_instance(self) -> str:
        return f"127.0.0.1:{self.exporter_port}"

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self) -> None:
        self.service.start()
        self._spawn(
            "node_exporter",
            [self.exporter_bin, f"--web.listen-address=127.0.0.1:{self.exporter_port}",
             "--collector.disable-defaults", *(f"--collector.{c}" for c in NODE_COLLECTORS)],
        )  # fmt: skip
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: node\n    static_configs:\n      - targets: ['{self.node_instance}']\n"
            f"  - job_name: service\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.service.port}']\n"
            + self.extra_scrapes
            + self.extra_config
        )
        self._spawn(
            "prometheus",
            [self.prometheus_bin, f"--config.file={config}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}"],
        )  # fmt: skip
        self.wait_for("Prometheus ready", self._ready)
        # Rates need two samples: wait for three scrapes of each job.
        self.wait_for("three scrapes of node_exporter", lambda: self._scrapes("node") >= 3)
        self.wait_for("three scrapes of the service", lambda: self._scrapes("service") >= 3)

    def stop(self) -> None:
        for name in reversed(list(self._procs)):
            self.stop_process(name)
        self.service.stop()

    def stop_process(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        stop_process(proc)

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for(
        self, what: str, condition: Callable[[], bool], deadline_s: float = START_DEADLINE_S
    ) -> None:
        """Poll `condition` until it holds; between polls wait on the Prometheus process."""
        deadline = time.monotonic() + deadline_s
        last = ""
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last = f" (last: {type(exc).__name__}: {exc})"
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            prom = self._procs.get("prometheus")
            if prom is None:
                pytest.fail(f"waiting for {what} without a Prometheus process")
            try:
                prom.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                continue
        pytest.fail(f"no {what} within {deadline_s:.0f} s{last}:\n{self.log('prometheus')}")

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:
            self._procs[name] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def _scrapes(self, job: str) -> float:
        return (
            self.scalar(f'count_over_time(up{{job="{job}"}}[1m]) and up{{job="{job}"}} == 1') or 0
        )


def _run_stack(binaries: tuple[str, str], workdir: Path) -> Iterator[PromStack]:
    stack = PromStack(binaries[0], binaries[1], workdir)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def promstack(prom_binaries: tuple[str, str], tmp_path: Path) -> Iterator[PromStack]:
    """A stack of its own (for a test that stops the exporter); stopped also on failure."""
    yield from _run_stack(prom_binaries, tmp_path)


@pytest.fixture(scope="module")
def shared_promstack(
    prom_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PromStack]:
    """One stack for a module's tests that only read (starting one takes seconds)."""
    yield from _run_stack(prom_binaries, tmp_path_factory.mktemp("promstack"))
