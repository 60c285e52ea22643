"""The HTTP API under a real uvicorn on loopback, driven by httpx and an SSE client.

The backend is the simulated Ollama server at a small time scale (SIMULATED timings).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from bench.plumbing import free_port
from engine.api.settings import ApiSettings
from engine.cli import main
from engine.records import AnalysisResult
from engine.sources.snapshot import SCENARIOS
from tests.support.api_server import ApiServer, simulated_app

TOKEN = "s3cret-token-for-the-test"
REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture
def api(data_dir: Path) -> Iterator[ApiServer]:
    with ApiServer(simulated_app(data_dir)) as server:
        yield server


def metric(server: ApiServer, name: str, **labels: str) -> float:
    """The value of one sample in /metrics (0 when the series does not exist)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_insights_runs_in_parallel_then_hits_the_cache(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url, timeout=60) as client:
        first = client.get("/api/insights/autogen")
        again = client.get("/api/insights/autogen")
    assert first.status_code == again.status_code == 200
    fresh = AnalysisResult.from_dict(first.json())
    assert fresh.mode == "parallel" and fresh.backend.simulated
    assert fresh.agents_participated == fresh.agents_total == 5
    assert not fresh.cache.hit and first.headers["X-Quorum-Cache"] == "miss"
    hit = again.json()
    assert hit["cache"]["hit"] and again.headers["X-Quorum-Cache"] == "hit"
    assert hit["insights"] == first.json()["insights"]
    assert hit["run_id"] != fresh.run_id  # each call is its own history entry


def test_scenario_mode_and_settings_come_from_the_query(api: ApiServer) -> None:
    response = httpx.get(
        f"{api.url}/api/insights",
        params={"scenario": "memory-leak", "mode": "sequential", "quorum": 2},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["mode"] == "sequential"
    assert any("mem" in m for i in data["insights"] for m in i["metrics"])


def test_post_analyze_takes_a_snapshot_body(api: ApiServer) -> None:
    body = {**SCENARIOS["disk-io-bound"], "host": "db-1", "cpu_count": 4}
    response = httpx.post(f"{api.url}/api/analyze", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert any("disk" in m for i in response.json()["insights"] for m in i["metrics"])


def cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["analyze", *argv]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: ")
    return line.removeprefix("error: ")


def test_bad_input_is_422_with_the_clis_message(
    api: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {**SCENARIOS["healthy"], "host": "h", "cpu_count": 2, "cpu_util_pct": 500}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    cli_snapshot = cli_error(tmp_path, capsys, "--snapshot", str(path))
    cli_quorum = cli_error(tmp_path, capsys, "--scenario", "healthy", "--quorum", "0")
    with httpx.Client(base_url=api.url, timeout=30) as client:
        snapshot = client.post("/api/analyze", content=path.read_bytes())
        quorum = client.get("/api/insights", params={"quorum": 0})
        not_json = client.post("/api/analyze", content=b"{nope")
        mode = client.get("/api/insights", params={"mode": "fastest"})
        typed = client.get("/api/insights", params={"grace": "soon"})
        source = client.get("/api/insights", params={"source": "moon"})
    assert snapshot.status_code == quorum.status_code == 422
    assert (
        snapshot.json()["detail"] == cli_snapshot == "snapshot cpu_util_pct: must be ≤ 100, got 500"
    )
    assert quorum.json()["detail"] == cli_quorum == "quorum: must be ≥ 1, got 0"
    assert not_json.status_code == 422
    assert not_json.json()["detail"].startswith("snapshot file: not valid JSON (line 1")
    assert mode.json()["detail"].startswith("mode: must be one of parallel, sequential, single")
    assert typed.status_code == 422 and typed.json()["detail"].startswith("grace: ")
    assert source.json()["detail"] == "source: must be one of live, prometheus, got 'moon'"
    assert "\n" not in snapshot.json()["detail"]


def test_a_body_over_one_mib_is_refused_while_it_is_read(api: ApiServer) -> None:
    big = b"{" + b" " * (2**20) + b"}"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must count as it reads
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    with httpx.Client(base_url=api.url, timeout=30) as client:
        declared = client.post("/api/analyze", content=big)
        streamed = client.post("/api/analyze", content=chunks())
        history = client.get("/api/runs").json()["runs"]
    assert declared.status_code == streamed.status_code == 413
    assert history == []  # nothing was analysed


def test_concurrent_identical_requests_are_one_fan_out(api: ApiServer) -> None:
    params = {"scenario": "error-spike"}
    with (
        httpx.Client(base_url=api.url, timeout=60) as client,
        concurrent.futures.ThreadPoolExecutor(12) as pool,
    ):
        responses = list(pool.map(lambda _: client.get("/api/insights", params=params), range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    assert sum(not r.json()["cache"]["hit"] for r in responses) == 1
    assert metric(api, "quorum_runs_total") == 1
    assert metric(api, "quorum_cache_misses_total") == 1
    served = metric(api, "quorum_cache_hits_total") + metric(
        api, "quorum_single_flight_joins_total"
    )
    assert served == 11
    assert len({r.json()["insights"][0]["title"] for r in responses}) == 1


def test_the_stream_sends_progress_then_the_result(api: ApiServer) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    with (
        httpx.Client(base_url=api.url, timeout=60) as client,
        connect_sse(client, "GET", "/api/analyze/stream", params={"scenario": "healthy"}) as sse,
    ):
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        for event in sse.iter_sse():
            events.append((event.event, event.json()))
    kinds = [kind for kind, _ in events]
    assert {"queued", "started", "tokens", "finished"} <= set(kinds)
    assert kinds[-1] == "result" and kinds.count("result") == 1
    finished = {str(data["agent"]) for kind, data in events if kind == "finished"}
    assert {"SecurityAnalyst", "PerformanceAnalyst"} <= finished
    result = AnalysisResult.from_dict(events[-1][1])
    assert result.agents_participated == 5
    stored = httpx.get(f"{api.url}/api/runs/{result.run_id}", timeout=10)
    assert stored.status_code == 200 and stored.json()["tier"] == result.tier


def test_a_client_leaving_mid_stream_cancels_nothing_others_wait_for(data_dir: Path) -> None:
    # A slower run (time scale 0.2, SIMULATED) so the second caller surely joins it.
    with (
        ApiServer(simulated_app(data_dir, time_scale=0.2)) as api,
        httpx.Client(base_url=api.url, timeout=120) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        params = {"scenario": "memory-leak"}
        with connect_sse(client, "GET", "/api/analyze/stream", params=params) as sse:
            for event in sse.iter_sse():
                if event.event == "started":
                    waiting = pool.submit(client.get, "/api/insights", params=params)
                    break  # leave the stream: the connection closes here
        other = waiting.result(timeout=120)
        assert other.status_code == 200
        data = other.json()
        assert data["agents_participated"] == data["agents_total"] == 5
        assert all(agent["status"] == "ok" for agent in data["agents"])
        assert metric(api, "quorum_runs_total") == 1  # the abandoned run was the one served


def test_history_routes(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url, timeout=60) as client:
        run_id = client.get("/api/insights").json()["run_id"]
        listing = client.get("/api/runs", params={"limit": 5}).json()["runs"]
        one = client.get(f"/api/runs/{run_id}")
        missing = client.get("/api/runs/0123456789abcdef")
        bad = client.get("/api/runs/not-an-id")
    assert listing[0]["run_id"] == run_id
    assert listing[0]["link"] == f"http://127.0.0.1:8501/?run={run_id}"
    assert one.status_code == 200 and one.json()["run_id"] == run_id
    assert missing.status_code == 404 and bad.status_code == 422


def test_healthz_and_openapi(api: ApiServer) -> None:
    health = httpx.get(f"{api.url}/healthz", timeout=30)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["backend"]["reachable"] and body["backend"]["simulated"]
    assert body["cache"]["kind"] == "disk" and body["history"]["degraded"] is None
    paths = httpx.get(f"{api.url}/openapi.json", timeout=10).json()["paths"]
    for path in ("/api/insights", "/api/insights/autogen", "/api/analyze", "/api/analyze/stream",
                 "/api/runs", "/api/runs/{run_id}", "/healthz", "/metrics"):  # fmt: skip
        assert path in paths


def test_the_token_guards_every_route_but_healthz(data_dir: Path) -> None:
    settings = ApiSettings(token=TOKEN)
    with (
        ApiServer(simulated_app(data_dir, settings)) as api,
        httpx.Client(base_url=api.url, timeout=60) as client,
    ):
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/api/insights", "/api/runs", "/metrics", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 401, path
            wrong = client.get(path, headers={"Authorization": f"Bearer {TOKEN}x"})
            assert wrong.status_code == 401, path
        assert client.get("/healthz").status_code == 200
        for path in ("/api/analyze", "/api/alertmanager"):
            assert client.post(path, json={}).status_code == 401, path
        ok = client.get("/api/insights", headers=bearer)
        assert ok.status_code == 200
        texts = [ok.text, str(ok.headers), client.get("/metrics", headers=bearer).text,
                 client.get("/api/runs", headers=bearer).text, client.get("/healthz").text]  # fmt: skip
        assert not any(TOKEN in text for text in texts)


def test_metrics_are_observed_from_the_results_served(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url, timeout=60) as client:
        result = client.get("/api/insights").json()
        client.get("/api/insights")  # a hit: counted, but no agent observed twice
        exposition = client.get("/metrics")
    assert exposition.headers["content-type"].startswith("text/plain")
    agent, model = result["agents"][0]["name"], result["agents"][0]["model"]
    assert metric(api, "quorum_agent_duration_seconds_count", agent=agent, model=model) == 1
    for phase in ("client_queue", "server_queue", "load", "prefill", "decode"):
        count = metric(
            api, "quorum_agent_phase_seconds_count", agent=agent, model=model, phase=phase
        )
        assert count == 1, phase
    assert metric(api, "quorum_agent_outcomes_total", agent=agent, status="ok") == 1
    assert metric(api, "quorum_runs_total", tier=result["tier"], mode="parallel") == 1
    assert metric(api, "quorum_cache_hits_total") == 1
    tokens_out = sum(a["output_tokens"] or 0 for a in [*result["agents"], result["consolidation"]])
    tokens_out += sum(w["output_tokens"] or 0 for w in result["warmups"])
    assert metric(api, "quorum_tokens_total", direction="out", model=model) == tokens_out
    saved = result["consolidation"]["cached_tokens"] if result["warmups"] else 0
    assert metric(api, "quorum_warmup_tokens_saved_total") == (saved or 0)


def test_live_requests_within_the_ttl_share_one_sample_and_hit_the_cache(
    api: ApiServer,
) -> None:
    with httpx.Client(base_url=api.url, timeout=60) as client:
        first = client.get("/api/insights", params={"source": "live"}).json()
        again = client.get("/api/insights", params={"source": "live"}).json()
        resampled = client.get("/api/insights", params={"source": "live", "refresh": True})
    assert first["snapshot_key"] == again["snapshot_key"]
    assert not first["cache"]["hit"] and again["cache"]["hit"]
    assert resampled.status_code == 200 and not resampled.json()["cache"]["hit"]


def test_the_serve_command_binds_loopback_and_serves_the_plans_url(data_dir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--port", str(port), "--scenario", "healthy",
         "--sim-time-scale", "0.02", "--mode", "parallel"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 60 s"
            with contextlib.suppress(subprocess.TimeoutExpired):  # wait on the process
                proc.wait(timeout=0.1)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        listening = {c.laddr for c in psutil.Process(proc.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}  # fmt: skip
        # The API and the embedded simulated LLM server: loopback only, both.
        assert ("127.0.0.1", port) in {(addr.ip, addr.port) for addr in listening}
        assert {addr.ip for addr in listening} == {"127.0.0.1"}
        data = httpx.get(f"{url}/api/insights/autogen", timeout=60).json()
        assert data["mode"] == "parallel" and data["backend"]["simulated"]
        assert data["snapshot_key"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert main(["serve", "--workers", "0"]) == 2
