"""Every fault × both protocols × every mode, through `engine.run.runner.run_analysis`.

One test per fault and protocol runs the three modes side by side, each against its own
chaos server (a fault like "503 once" counts requests per agent, so runs must not share
one). The fault hits one specialist (SecurityAnalyst) in parallel and sequential mode and
the Generalist in single mode. Each run must:
- end within the agent timeout + 0.5 s per agent it waited for;
- give the faulty agent the right status with a clear one-line error, and every other agent ok;
- leave no task running and no connection open at the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from bench.plumbing import free_port
from engine.backends.base import Backend
from engine.backends.ollama import OllamaBackend
from engine.backends.openai_compat import OpenAICompatBackend
from engine.records import AnalysisResult, Mode
from engine.run.agents import DEFAULT_ROSTER
from engine.run.runner import MODES, RunSettings, run_analysis
from engine.sources.snapshot import scenario
from tests.support.chaos_server import FAULTS, ChaosServer

AGENT_TIMEOUT_S = 1.5
SLACK_S = 0.5  # per agent waited for
SETTINGS = {
    # grace longer than the timeout: a faulty agent ends by its own timeout, not by quorum
    mode: RunSettings(mode=mode, agent_timeout_s=AGENT_TIMEOUT_S, grace_s=5.0, quorum=3)
    for mode in MODES
}
PROTOCOLS = ("ollama", "openai")


@dataclass(frozen=True)
class Expect:
    status: str
    words: str  # in the agent's error ("" for ok)
    requests: int | None = None  # how many the faulty agent sent (retries included)


def expected(fault: str, protocol: str) -> Expect:
    timeout = Expect("timeout", f"no answer within {AGENT_TIMEOUT_S:g} s")
    table = {
        "hang_headers": timeout,
        "hang_mid": timeout,
        "slow_drip": timeout,
        "http_500": Expect("error", "HTTP 500", requests=1),
        "busy_once": Expect("ok", "", requests=2),
        "busy_retry_after_once": Expect("ok", "", requests=2),
        "busy_forever": Expect("error", "HTTP 503", requests=3),
        "model_404": Expect("error", "HTTP 404", requests=1),
        "bad_json_line": Expect("error", "invalid JSON", requests=1),
        "bad_framing": Expect(
            "error", "stream ended early" if protocol == "openai" else "invalid JSON line"
        ),
        "error_mid": Expect("error", "server error: chaos: out of memory", requests=1),
        "reset_mid": Expect("error", "stream ended early", requests=1),
        "not_json": Expect("error", "answer was not JSON", requests=1),
        "endless": Expect("error", "chunks (≈ tokens) and was cut off", requests=1),
        "oversize": Expect("error", "KiB and was cut off", requests=1),
    }
    return table[fault]


def factory(protocol: str, url: str) -> Callable[[], Backend]:
    if protocol == "ollama":
        return lambda: OllamaBackend(url, max_connections=8)
    return lambda: OpenAICompatBackend(url + "/v1", api_key="sk-chaos", max_connections=8)


def target(mode: Mode) -> str:
    return "Generalist" if mode == "single" else "SecurityAnalyst"


async def run_mode(mode: Mode, protocol: str, server: ChaosServer) -> tuple[AnalysisResult, float]:
    started = time.perf_counter()
    result = await run_analysis(
        scenario("cpu-saturation"),
        DEFAULT_ROSTER,
        factory(protocol, server.url),
        SETTINGS[mode],
        model="m",
    )
    return result, time.perf_counter() - started


def check_run(
    mode: Mode,
    protocol: str,
    fault: str,
    result: AnalysisResult,
    wall_s: float,
    server: ChaosServer,
) -> None:
    where = f"{fault}/{protocol}/{mode}"
    want = expected(fault, protocol)
    runs = {r.name: r for r in result.agents}
    bad = runs[target(mode)]
    assert bad.status == want.status, f"{where}: {bad.status} ({bad.error})"
    if want.words:
        assert bad.error is not None and want.words in bad.error, f"{where}: {bad.error!r}"
        assert "\n" not in bad.error and "Traceback" not in bad.error
        assert "sk-chaos" not in bad.error
    else:
        assert bad.error is None, where
    if want.requests is not None:
        assert server.requests[target(mode)] == want.requests, f"{where}: {server.requests}"
    if fault == "busy_retry_after_once":
        assert bad.duration_s >= 1.0, f"{where}: did not honour Retry-After: 1"

    others = [r for name, r in runs.items() if name != target(mode)]
    assert all(r.status == "ok" for r in others), f"{where}: {[(r.name, r.error) for r in others]}"
    for run in result.agents:
        assert run.duration_s <= AGENT_TIMEOUT_S + SLACK_S, f"{where}: {run.name} {run.duration_s}"

    waited = len(result.agents) + (1 if result.consolidation is not None else 0)
    bound = AGENT_TIMEOUT_S + SLACK_S * waited
    assert wall_s <= bound, f"{where}: run took {wall_s:.2f} s > {bound:.2f} s"
    if mode != "single":
        assert result.consolidation is not None and result.consolidation.method == "llm", where
        assert result.tier == ("excellent" if want.status == "ok" else "good"), where


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_matrix(fault: str, protocol: str) -> None:
    servers = {mode: ChaosServer({target(mode): fault}) for mode in MODES}
    for server in servers.values():
        server.__enter__()
    try:
        outcomes = await asyncio.gather(
            *(run_mode(mode, protocol, servers[mode]) for mode in MODES)
        )
        # Nothing outlives the runs: no task, and (the backend closed its pool) no socket.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        for mode, server in servers.items():
            assert await asyncio.to_thread(server.wait_idle, 2.0), (
                f"{fault}/{protocol}/{mode}: {server.open_connections} connections left open"
            )
        for mode, (result, wall_s) in zip(MODES, outcomes, strict=True):
            check_run(mode, protocol, fault, result, wall_s, servers[mode])
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connection_refused_degrades_every_agent_quickly(protocol: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for mode in MODES:
        started = time.perf_counter()
        result = await run_analysis(
            scenario("cpu-saturation"), DEFAULT_ROSTER, factory(protocol, url), SETTINGS[mode],
            model="m",
        )  # fmt: skip
        wall_s = time.perf_counter() - started
        assert result.status == "error" and result.tier == "fallback", mode
        assert all(r.status == "error" for r in result.agents), mode
        assert all("cannot reach" in (r.error or "") for r in result.agents), mode
        assert result.error is not None and "cannot reach" in result.error
        assert result.insights, "the rule-based insights still reach the user"
        assert wall_s <= SLACK_S * len(result.agents) + SLACK_S, f"{mode}: {wall_s:.2f} s"
    assert asyncio.all_tasks() == {asyncio.current_task()}
