"""Shared set-up: simulated servers, engines pointed at them, rosters, timing sums.

Only public entry points: `SimulatedOllamaServer`, `BackendConfig`, `Engine`,
`RunSettings`, and Ollama's own HTTP API. Servers keep the model loaded for the whole row
(a huge keep-alive, a preload before measuring) and each worker process pays its
first-use costs before it measures, so figures are steady state, not cold start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from engine.records import AgentRun, AnalysisResult
from engine.run.agents import DEFAULT_MODEL, DEFAULT_ROSTER, Roster
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import Snapshot, scenario
from engine.store.disk import ResultCache
from engine.store.history import History

T = TypeVar("T")

SNAPSHOT = "cpu-saturation"  # the scenario the simulated profiles are documented on
KEEP_LOADED_S = 1e7  # simulated seconds: never unload during a row
DEFAULT_GRACE_S = RunSettings().grace_s
DEFAULT_TIMEOUT_S = RunSettings().agent_timeout_s


def sim_config(
    profile: str = "baseline",
    *,
    slots: int = 6,
    scale: float,
    faults: Sequence[tuple[str, str]] = (),
) -> SimConfig:
    return SimConfig(
        profile=profile,
        num_parallel=slots,
        time_scale=scale,
        faults=tuple(faults),
        keep_alive_s=KEEP_LOADED_S,
    )


@contextmanager
def running(config: SimConfig, *, preload: bool = True) -> Iterator[SimulatedOllamaServer]:
    """A started server; with `preload`, its model is loaded before the row measures."""
    with SimulatedOllamaServer(config) as server:
        if preload:
            preload_model(server)
        yield server


def preload_model(server: SimulatedOllamaServer, model: str = DEFAULT_MODEL) -> None:
    """Ollama's documented preload: a chat with no messages loads the model, nothing else.

    Cheaper than a discarded analysis, and it sends no agent header, so it leaves the
    server's per-agent random draws untouched: identical servers stay in step."""
    response = httpx.post(
        f"{server.url}/api/chat", json={"model": model, "messages": []}, timeout=60
    )
    response.raise_for_status()


def warm_process() -> None:
    """Pay this process's first-use costs (imports, the TLS context httpx builds, the
    first event loop) on a throw-away server, not inside a measured run."""
    with running(sim_config(scale=0.001)) as server:
        engine_for(server).analyze(snapshot(), RunSettings())


def backend_for(server: SimulatedOllamaServer) -> BackendConfig:
    """The backend config the dashboard would build, pointed at this server's URL."""
    return BackendConfig(kind="simulated", base_url=server.url, sim=server.config)


def engine_for(
    server: SimulatedOllamaServer,
    *,
    roster: Roster = DEFAULT_ROSTER,
    cache: ResultCache | None = None,
    history: History | None = None,
) -> Engine:
    return Engine(backend_for(server), roster=roster, cache=cache, history=history)


def scaled_settings(scale: float, **overrides: Any) -> RunSettings:
    """RunSettings whose seconds (grace, agent timeout) shrink with the server's time
    scale, so a scaled run is a faithful miniature of one at time scale 1."""
    values: dict[str, Any] = {
        "grace_s": DEFAULT_GRACE_S * scale,
        "agent_timeout_s": DEFAULT_TIMEOUT_S * scale,
    }
    values.update(overrides)
    return RunSettings(**values)


def snapshot(variant: int = 0, name: str = SNAPSHOT) -> Snapshot:
    """A scenario snapshot; `variant` > 0 makes a distinct cache key (request rate +10/s
    per step) without changing the story the agents tell."""
    base = scenario(name)
    if variant == 0:
        return base
    return replace(base, request_rate_per_s=(base.request_rate_per_s or 0.0) + 10.0 * variant)


def roster_of(n: int) -> Roster:
    """N specialists cycling the five roles, each with a unique name."""
    base = DEFAULT_ROSTER.specialists
    specs = tuple(
        replace(base[i % len(base)], name=f"{base[i % len(base)].name}-{i + 1:02d}")
        for i in range(n)
    )
    return Roster(specs, DEFAULT_ROSTER.consolidator, DEFAULT_ROSTER.generalist)


def server_s(run: AgentRun | None) -> float:
    """Seconds the server itself reports for a call: load + prefill + decode."""
    if run is None:
        return 0.0
    return (run.load_s or 0.0) + (run.prefill_s or 0.0) + (run.decode_s or 0.0)


def server_critical_path(result: AnalysisResult) -> float:
    """The critical path from the server's own reports (no client-side time at all):
    the slowest agent the run waited for plus the consolidation."""
    waited = [
        server_s(a)
        for a in result.agents
        if a.status != "cancelled" and a.name not in result.late_agents
    ]
    return max(waited, default=0.0) + server_s(result.consolidation)


def agents_phase_s(result: AnalysisResult) -> float:
    """From the run's start to the last agent's end (what the consolidation waits for)."""
    return max((a.end_s for a in result.agents), default=0.0)


def interleaved(arms: Sequence[tuple[str, Callable[[], T]]], repeats: int) -> dict[str, list[T]]:
    """Run every arm `repeats` times, round-robin with a rotating first arm, so slow
    drift on a noisy machine is shared by all arms."""
    out: dict[str, list[T]] = {name: [] for name, _ in arms}
    for r in range(repeats):
        for i in range(len(arms)):
            name, call = arms[(r + i) % len(arms)]
            out[name].append(call())
    return out


def analysis(
    engine: Engine, settings: RunSettings, snap: Snapshot | None = None
) -> Callable[[], AnalysisResult]:
    """`engine.analyze` of one snapshot as a zero-argument call, for `interleaved`."""
    target = snap if snap is not None else snapshot()
    return lambda: engine.analyze(target, settings)
