"""Analysis results for tests that read one: built by hand with exact timings
(`make_result`, `agent`), or run on the fake backend without HTTP (`a_result`)."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.records import (
    AgentRun,
    AnalysisResult,
    BackendInfo,
    CacheInfo,
    ConsolidationRun,
    Insight,
    Mode,
)
from engine.run.agents import DEFAULT_ROSTER
from engine.run.runner import RunSettings, run_analysis
from engine.sources.snapshot import scenario
from tests.support.fakes import FakeBackend


def agent(
    name: str,
    start: float,
    duration: float,
    *,
    status: Any = "ok",
    queue: float | None = 0.0,
    load: float | None = 0.1,
    prefill: float | None = 0.2,
    decode: float | None = None,
    tokens: int | None = 100,
) -> AgentRun:
    """A run whose decode fills the bar unless given, so the breakdown is exact by default."""
    parts = [p for p in (queue, load, prefill) if p is not None]
    if decode is None and load is not None:
        decode = max(0.0, duration - sum(parts))
    return AgentRun(
        name=name,
        role=name.lower(),
        model="m",
        status=status,
        start_s=start,
        end_s=start + duration,
        duration_s=duration,
        ttft_s=0.3 if status == "ok" else None,
        queue_s=queue,
        load_s=load,
        prefill_s=prefill,
        decode_s=decode,
        prompt_tokens=250,
        output_tokens=tokens,
        error=None if status == "ok" else f"{name} {status}",
    )


def make_result(
    *,
    mode: Mode = "parallel",
    agents: list[AgentRun] | None = None,
    consolidation_s: float = 1.0,
    quorum_s: float | None = 2.5,
    late: list[str] | None = None,
    wall: float | None = None,
) -> AnalysisResult:
    """A parallel run: A fast, B slowest ok, C timed out, D cancelled (straggler), E no
    breakdown (a server that reports no timings)."""
    runs = agents or [
        agent("A", 0.0, 2.0),
        agent("B", 0.0, 3.0),
        agent("C", 0.0, 2.8, status="timeout", queue=None, load=None, prefill=None),
        agent("D", 0.0, 3.5, status="cancelled", queue=None, load=None, prefill=None),
        agent("E", 0.0, 2.5, queue=None, load=None, prefill=None, tokens=None),
    ]
    done = max(r.end_s for r in runs)
    cons = ConsolidationRun(
        name="Consolidator",
        role="consolidator",
        model="m",
        status="ok",
        start_s=done,
        end_s=done + consolidation_s,
        duration_s=consolidation_s,
        queue_s=0.0,
        load_s=0.0,
        prefill_s=consolidation_s / 2,
        decode_s=consolidation_s / 2,
        output_tokens=80,
        method="llm",
    )
    ok = [r for r in runs if r.status == "ok"]
    waited = [r.work_s for r in runs if r.status != "cancelled" and r.name not in (late or [])]
    return AnalysisResult(
        status="success",
        mode=mode,
        backend=BackendInfo("simulated", "http://127.0.0.1:1", "m", simulated=True),
        snapshot_key="k",
        tier="good",
        confidence=88,
        agents_participated=len(ok),
        agents_total=len(runs),
        missing_roles=[r.role for r in runs if r.status != "ok"],
        execution_time_s=wall if wall is not None else done + consolidation_s,
        critical_path_s=max(waited, default=0.0) + cons.work_s,
        cache=CacheInfo(),
        agents=runs,
        consolidation=cons,
        insights=[Insight("t", "o", ["r"], "HIGH", 88, ["A"], ["cpu_util_pct"])],
        collaboration_summary="summary",
        quorum_reached_s=quorum_s,
        late_agents=late or [],
        created_at=1_700_000_000.0,
        simulated_profile="baseline",
    )


def a_result(name: str = "healthy") -> AnalysisResult:
    """A real run of the runner on scenario `name`, answered by the fake backend."""
    return asyncio.run(
        run_analysis(scenario(name), DEFAULT_ROSTER, FakeBackend, RunSettings(), model="m")
    )
