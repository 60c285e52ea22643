"""The Prometheus source against the real thing: Debian's prometheus and node_exporter on
loopback (tests/support/prometheus_stack.py), a service with a real prometheus-client histogram, the CLI.

Tolerances (docs/prometheus.md): CPU utilisation within 10 percentage points of psutil
over the same few seconds (both sample a busy shared machine, windows differ by up to a
scrape interval); memory within 3 points and swap within 3 (the same /proc/meminfo, up
to a second apart); disk space within 1 point (the same statfs of /).
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bench.plumbing import free_port
from engine.cli import main
from engine.sources import prometheus as prom
from engine.sources.snapshot import FIELDS
from tests.support.prometheus_stack import PromStack

pytestmark = pytest.mark.prometheus

CPU_TOLERANCE_PCT = 10.0
MEMORY_TOLERANCE_PCT = 3.0
DISK_SPACE_TOLERANCE_PCT = 1.0
NODE_FIELDS = [f.name for f in FIELDS if f.required]
FAST = ["--sim-time-scale", "0.01", "--sim-profile", "gpu"]


@pytest.fixture(autouse=True)
def data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conftest's, for every test here, and no Prometheus token from the environment."""
    monkeypatch.delenv(prom.TOKEN_ENV, raising=False)
    return data_dir


def read(stack: PromStack, **settings: Any) -> prom.PromReading:
    return prom.read_snapshot(prom.Endpoint.parse(stack.url), prom.PromSettings(**settings))


def busy_fraction(before: Any, after: Any) -> float:
    """psutil's CPU utilisation between two cpu_times() readings, in %."""
    total = sum(after) - sum(before)
    idle = after.idle - before.idle
    return 100.0 * (1.0 - idle / total) if total > 0 else 0.0


def test_snapshot_agrees_with_psutil_on_this_host(shared_promstack: PromStack) -> None:
    stack = shared_promstack
    sel = prom.selector(stack.node_instance, "node")
    newest = f"max(timestamp(node_cpu_seconds_total{{{sel}}}))"
    cpu0, t0 = psutil.cpu_times(), time.time()
    # Five seconds of node samples after t0, then both sides read the same interval.
    stack.wait_for("5 s of node samples", lambda: (stack.scalar(newest) or 0) >= t0 + 5)
    cpu1, t1 = psutil.cpu_times(), time.time()
    memory, swap, disk = psutil.virtual_memory(), psutil.swap_memory(), psutil.disk_usage("/")

    reading = read(stack, rate_window=f"{math.ceil(t1 - t0)}s")
    snap = reading.snapshot

    assert snap.source == f"prometheus:{stack.node_instance}"
    assert snap.host == socket.gethostname() and snap.cpu_count == psutil.cpu_count()
    measured = {
        "cpu_util_pct": (snap.cpu_util_pct, busy_fraction(cpu0, cpu1), CPU_TOLERANCE_PCT),
        "mem_util_pct": (snap.mem_util_pct, memory.percent, MEMORY_TOLERANCE_PCT),
        "mem_swap_pct": (snap.mem_swap_pct, swap.percent, MEMORY_TOLERANCE_PCT),
        "disk_space_pct": (snap.disk_space_pct, disk.percent, DISK_SPACE_TOLERANCE_PCT),
    }
    for name, (from_prom, from_psutil, tolerance) in measured.items():
        assert from_prom is not None, f"{name} unknown: {reading.warnings}"
        print(f"{name}: prometheus {from_prom:.2f} psutil {from_psutil:.2f}")
        assert abs(from_prom - from_psutil) <= tolerance, (name, from_prom, from_psutil)
    # Everything node_exporter can say on this host is known; what it cannot is named.
    for name in NODE_FIELDS:
        if snap.metric(name) is None:
            assert any(w.startswith(f"{name}: unknown") for w in reading.warnings), name


def test_service_fields_come_from_the_histogram(shared_promstack: PromStack) -> None:
    stack = shared_promstack
    before = read(stack).snapshot
    # No requests yet: latency and error rate are unknown (0/0), not 0.
    assert before.p95_latency_ms is None and before.error_rate_pct is None
    assert before.request_rate_per_s == 0.0  # a rate of no requests is a true 0

    # 100 requests: 80 take 30 ms, 20 take 300 ms; every tenth answers 500.
    with httpx.Client(base_url=stack.service.url, timeout=5) as client:
        for i in range(100):
            ms = 30 if i < 80 else 300
            code = 500 if i % 10 == 0 else 200
            assert client.get("/work", params={"ms": ms, "code": code}).status_code == code
    stack.wait_for(
        "the 100 requests scraped",
        lambda: stack.scalar("sum(http_requests_total)") == 100.0,
    )
    snap = read(stack).snapshot
    # The 95th request is the 15th of 20 in the (0.2 s, 0.5 s] bucket: histogram_quantile
    # interpolates 0.2 + 0.3 × 15/20 = 0.425 s.
    assert snap.p95_latency_ms == pytest.approx(425, abs=5)
    assert snap.p95_baseline_ms == pytest.approx(425, abs=5)  # the same data over 1 h
    assert snap.error_rate_pct == pytest.approx(10.0, abs=0.5)
    assert snap.request_rate_per_s is not None and snap.request_rate_per_s > 0


def test_cli_snapshot_and_analyze_from_prometheus(
    shared_promstack: PromStack, capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    stack = shared_promstack
    secret_url = stack.url.replace("http://", "http://ops:hunter2@")
    assert main(["snapshot", "--prometheus", secret_url, "--instance", stack.node_instance]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["source"] == f"prometheus:{stack.node_instance}"
    assert data["mem_util_pct"] is not None and data["cpu_count"] == psutil.cpu_count()

    code = main(["analyze", "--prometheus", secret_url, "--job", "node", "--json", *FAST])
    out2, err2 = capsys.readouterr()
    assert code == 0, err2
    result = json.loads(out2)
    assert result["status"] == "success" and result["agents_participated"] == 5
    files = [p.read_bytes() for p in data_dir.rglob("*") if p.is_file()]
    assert files, "the analysis wrote no history or cache"
    for text in (out, err, out2, err2):
        assert "hunter2" not in text and "ops:" not in text
    assert all(b"hunter2" not in blob for blob in files)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--instance", "10.9.9.9:9100"], "prometheus instance: '10.9.9.9:9100' is not a target"),
        (["--job", "web"], "prometheus job: 'web' has no active target (jobs: node, service)"),
    ],
)
def test_cli_bad_target_is_one_line(
    shared_promstack: PromStack, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    assert main(["snapshot", "--prometheus", shared_promstack.url, *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {words}") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_cli_query_errors_and_nan_are_warnings(
    shared_promstack: PromStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "quorum.toml"
    config.write_text(
        "[prometheus.queries]\n"
        'p95_latency_ms = "histogram_quantile(0.95, sum by (le) (rate(nope_bucket[5m]"\n'
        'error_rate_pct = "0 / 0"\n'
        'request_rate_per_s = "1 / 0"\n'
    )
    args = ["snapshot", "--prometheus", shared_promstack.url, "--prometheus-config", str(config)]
    assert main(args) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["p95_latency_ms"] is None and data["error_rate_pct"] is None
    assert data["request_rate_per_s"] is None and data["mem_util_pct"] is not None
    lines = captured.err.splitlines()
    assert any(
        line.startswith("warning: p95_latency_ms: unknown, query error (bad_data: ")
        and "query: histogram_quantile(0.95, sum by (le) (rate(nope_bucket[5m]" in line
        for line in lines
    ), lines
    assert "warning: error_rate_pct: unknown, the query returned NaN" in captured.err
    assert "warning: request_rate_per_s: unknown, the query returned +Inf" in captured.err


def test_cli_unreachable_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["analyze", "--prometheus", url, *FAST]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: prometheus: cannot reach {url} (")
    assert err.count("\n") == 1


def test_cli_instance_needs_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "--scenario", "healthy", "--instance", "h:9100"]) == 2
    assert "--instance and --job need --prometheus URL" in capsys.readouterr().err


def test_a_stopped_exporter_gives_unknown_fields_and_a_warning(
    promstack: PromStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert read(promstack).snapshot.mem_util_pct is not None  # up before
    promstack.stop_process("node_exporter")
    promstack.wait_for("the node target down", lambda: promstack.scalar('up{job="node"}') == 0.0)

    reading = read(promstack)
    assert all(reading.snapshot.metric(name) is None for name in NODE_FIELDS)
    assert reading.warnings[0].startswith(
        f"node_exporter {promstack.node_instance} (node) is down: "
    )
    assert reading.warnings[0].endswith("its CPU, memory, disk and network fields are unknown")
    # The CLI still builds the snapshot: unknown fields are null, with warnings, exit 0.
    assert main(["snapshot", "--prometheus", promstack.url]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert all(data[name] is None for name in NODE_FIELDS)
    assert captured.err.startswith(
        f"warning: node_exporter {promstack.node_instance} (node) is down"
    )
    assert "Traceback" not in captured.err


def test_stale_node_samples_are_unknown(shared_promstack: PromStack) -> None:
    # Scrapes are 1 s apart, so the newest sample is always older than 1 ms: the real
    # freshness query (server clock, sample timestamps) has to call it stale.
    reading = read(shared_promstack, stale_after_s=0.001)
    assert all(reading.snapshot.metric(name) is None for name in NODE_FIELDS)
    assert re.match(
        rf"node_exporter {re.escape(shared_promstack.node_instance)}: newest sample is \d+ s old "
        r"\(stale after 0\.001 s\); its CPU, memory, disk and network fields are unknown$",
        reading.warnings[0],
    ), reading.warnings
    fresh = read(shared_promstack)  # the default 60 s: the same series are current
    assert fresh.snapshot.mem_util_pct is not None
