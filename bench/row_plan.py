"""P7: the plan's own approach (bench.plan_baseline) side by side with Quorum.

Per profile, three arms, each on its own server with the same configuration and seed
(so the k-th analysis of every arm gets the same answer lengths and the difference is
the client's): the plan (gather, wait for all, non-streaming /api/generate, a fresh
httpx.AsyncClient per call), ours with default settings (quorum 3), ours with quorum 5.
All engine and plan seconds (grace, agent timeouts) are scaled with the server, so a
run is a miniature of one at time scale 1. Walls are taken around the synchronous call
for every arm alike (event-loop creation included). `baseline+slow` is the baseline
profile with one agent 3× slower: where a quorum can matter.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from bench import plan_baseline
from bench.levels import Level
from bench.measure import Check, Row, Target, check
from bench.sim import (
    DEFAULT_TIMEOUT_S,
    engine_for,
    interleaved,
    running,
    scaled_settings,
    server_critical_path,
    sim_config,
    snapshot,
    warm_process,
)
from engine.run.runner import RunSettings
from engine.simulator import SimConfig

PLAN = "plan"
OURS_Q3 = "ours, quorum 3 (defaults)"
OURS_Q5 = "ours, quorum 5"
SLOW_AGENT = "ReliabilityEngineer"


@dataclass(frozen=True)
class Sample:
    wall_s: float
    server_critical_path_s: float
    agent_ttft_s: float  # median over the agents: first content the client could show
    agents: int  # answered
    plan_clients_s: float = 0.0  # the plan only: Σ time spent building fresh clients
    plan_last_send_s: float = 0.0  # the plan only: when the last agent's client was ready


def _config(profile: str, scale: float) -> SimConfig:
    if profile == "baseline+slow":
        return sim_config("baseline", scale=scale, faults=[(SLOW_AGENT, "slow")])
    return sim_config(profile, scale=scale)


def _plan_call(url: str, timeout_s: float) -> Callable[[], Sample]:
    def call() -> Sample:
        started = time.perf_counter()
        result = plan_baseline.analyze(url, snapshot(), agent_timeout_s=timeout_s)
        wall = time.perf_counter() - started
        # Calls that timed out left no timing; if none answered, the wall stands in.
        agents = [c for c in result.calls if c.agent != "Consolidator"] or None
        return Sample(
            wall,
            result.server_critical_path_s,
            # Not streamed: the first content a client can show is the whole answer.
            statistics.median(c.duration_s for c in agents) if agents else wall,
            result.agents_participated,
            sum(c.client_ready_s for c in result.calls),
            max(c.started_s + c.client_ready_s for c in agents) if agents else wall,
        )

    return call


def _ours_call(analyze: Callable[..., object], settings: RunSettings) -> Callable[[], Sample]:
    def call() -> Sample:
        started = time.perf_counter()
        result = analyze(snapshot(), settings)
        wall = time.perf_counter() - started
        from engine.records import AnalysisResult  # for the type checker only

        assert isinstance(result, AnalysisResult)
        ttfts = [a.ttft_s for a in result.agents if a.ttft_s is not None]
        return Sample(
            wall,
            server_critical_path(result),
            statistics.median(ttfts) if ttfts else wall,
            result.agents_participated,
        )

    return call


def run(level: Level) -> Row:
    warm_process()
    scale = level.p7_scale
    timeout = DEFAULT_TIMEOUT_S * scale  # the plan's 30 s (Task 2) and ours, both scaled
    row = Row(
        "P7",
        "the plan's approach (gather, /api/generate, no streaming, fresh client per call) vs ours",
        "ours ≤ plan on every profile",
        {
            "profiles": list(level.p7_profiles),
            "time_scale": scale,
            "slots": 6,
            "repeats": level.repeats,
            "settings": "ours: RunSettings defaults scaled (quorum 3, grace 2 s, timeout "
            "30 s) and quorum 5; plan: 30 s agent timeout scaled",
        },
    )
    for profile in level.p7_profiles:
        with ExitStack() as stack:
            config = _config(profile, scale)
            plan_server = stack.enter_context(running(config))
            q3 = engine_for(stack.enter_context(running(config)))
            q5 = engine_for(stack.enter_context(running(config)))
            runs = interleaved(
                [
                    (PLAN, _plan_call(plan_server.url, timeout)),
                    (OURS_Q3, _ours_call(q3.analyze, scaled_settings(scale))),
                    (OURS_Q5, _ours_call(q5.analyze, scaled_settings(scale, quorum=5))),
                ],
                level.repeats,
            )
        row.checks += _profile_checks(profile, runs, scale)
    return row


def _profile_checks(profile: str, runs: dict[str, list[Sample]], scale: float) -> list[Check]:
    plan = runs[PLAN]
    out = [
        check(
            f"{profile}: {arm} ÷ plan, wall",
            [o.wall_s / p.wall_s for o, p in zip(runs[arm], plan, strict=True)],
            "×",
            Target("<=", 1.0),
        )
        for arm in (OURS_Q3, OURS_Q5)
    ]
    for arm, samples in runs.items():
        out += [
            check(f"{profile}: {arm}: wall", [s.wall_s for s in samples], "s", binding=False,
                  note=f"measured at time scale {scale:g}"),
            check(f"{profile}: {arm}: wall, projected to time scale 1",
                  [s.wall_s / scale for s in samples], "s", binding=False),
            check(f"{profile}: {arm}: wall − server-side critical path",
                  [(s.wall_s - s.server_critical_path_s) * 1000 for s in samples], "ms",
                  binding=False, note="what the client adds to the server's own work"),
            check(f"{profile}: {arm}: median agent time to first content",
                  [s.agent_ttft_s * 1000 for s in samples], "ms", binding=False,
                  note="non-streaming: the whole answer" if arm == PLAN else "streamed"),
            check(f"{profile}: {arm}: agents answered", [float(s.agents) for s in samples],
                  "of 5", binding=False),
        ]  # fmt: skip
    out += [
        check(f"{profile}: plan: Σ building fresh AsyncClients per analysis",
              [s.plan_clients_s * 1000 for s in plan], "ms", binding=False,
              note="synchronous (TLS context), so on the event loop, one after another"),
        check(f"{profile}: plan: last agent's client ready after",
              [s.plan_last_send_s * 1000 for s in plan], "ms", binding=False),
    ]  # fmt: skip
    return out
