"""P10: learned slots on an Ollama-protocol server with default flags, on the first run.

Each repeat starts a fresh simulated Ollama (it picks its slots as Ollama does and
reports nothing about them; model preloaded) and a fresh engine with nothing learned, so
every run is a first run: `--server-slots auto` probes the server before the fan-out
(engine/backends/slot_probe.py). Arms:
- 4 slots (the model fits): wall against the same run with `--server-slots 4`, on a
  server of its own; the probe's share of the wall;
- 1 slot (the model does not fit 4×): P2b's bar — 5/5 agents, tier excellent, wall
  ≤ 1.02 × the one-at-a-time bound (every call's server work one after another; the
  probe's requests are not in the bound: they are ours to pay for);
- a hung agent (`SecurityAnalyst=hang`, agent timeout 100 simulated seconds, on the
  4-slot server): it ends by its timeout + 0.5 s after it was sent (the straggler rules
  may cancel it sooner), and the others answer.
"""

from __future__ import annotations

from collections.abc import Callable

from bench import plan_baseline
from bench.levels import Level
from bench.measure import Row, Target, check
from bench.sim import (
    KEEP_LOADED_S,
    preload_model,
    scaled_settings,
    server_s,
    snapshot,
    warm_process,
)
from engine.records import AnalysisResult
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from engine.store.state import ProcessSlotMemory

# The hung agent's timeout, in simulated seconds (× the time scale): the others, four
# sharing the CPU curve's slots, take ≈ 35 s each on `baseline`, so 30 s would cut them.
HANG_TIMEOUT_SIM_S = 100.0


def first_run(config: SimConfig, settings: RunSettings, slots: int | None = None) -> AnalysisResult:
    """One analysis on a fresh server, by a fresh engine (nothing learned yet)."""
    with SimulatedOllamaServer(config) as server:
        preload_model(server)
        backend = BackendConfig(kind="ollama", base_url=server.url, server_slots=slots)
        engine = Engine(backend, slot_memory=ProcessSlotMemory())
        return engine.analyze(snapshot(), settings)


def plan_wall(config: SimConfig, timeout_s: float) -> tuple[float, int]:
    """The plan's `asyncio.gather` client on a fresh server of the same kind: (its wall,
    agents that answered)."""
    with SimulatedOllamaServer(config) as server:
        preload_model(server)
        result = plan_baseline.analyze(server.url, snapshot(), agent_timeout_s=timeout_s)
        return result.execution_time_s, result.agents_participated


def _one_at_a_time_s(result: AnalysisResult) -> float:
    return sum(server_s(a) for a in [*result.agents, *result.warmups]) + server_s(
        result.consolidation
    )


def _probe_s(result: AnalysisResult) -> float:
    return max((p.end_s for p in result.slot_probes), default=0.0)


def _repeat(repeats: int, call: Callable[[], AnalysisResult]) -> list[AnalysisResult]:
    return [call() for _ in range(repeats)]


def run(level: Level) -> Row:
    scale = level.p2_scale
    defaults = scaled_settings(scale)
    fits = SimConfig(time_scale=scale, keep_alive_s=KEEP_LOADED_S)
    no_fit = SimConfig(time_scale=scale, keep_alive_s=KEEP_LOADED_S, fits_in_memory=False)
    hung = SimConfig(
        time_scale=scale, keep_alive_s=KEEP_LOADED_S, faults=(("SecurityAnalyst", "hang"),)
    )
    warm_process()
    learned: list[AnalysisResult] = []
    configured: list[AnalysisResult] = []
    # On `baseline`'s CPU curve four agents sharing the slots take ≈ 35 s each: past the
    # default 30 s timeout. These arms give every agent time, so both walls hold answers.
    patient = scaled_settings(scale, agent_timeout_s=HANG_TIMEOUT_SIM_S * scale)
    for _ in range(level.repeats):  # interleaved, so a busy moment hits both arms
        learned.append(first_run(fits, patient))
        configured.append(first_run(fits, patient, slots=4))
    one = _repeat(level.repeats, lambda: first_run(no_fit, defaults))
    plan_timeout = defaults.agent_timeout_s  # the plan's 30 s, scaled like Quorum's
    plan4 = [plan_wall(fits, patient.agent_timeout_s) for _ in range(level.repeats)]
    plan1 = [plan_wall(no_fit, plan_timeout) for _ in range(level.repeats)]
    hang_timeout = HANG_TIMEOUT_SIM_S * scale
    hang_settings = RunSettings(agent_timeout_s=hang_timeout)
    hangs = _repeat(level.repeats, lambda: first_run(hung, hang_settings))
    row = Row(
        "P10",
        "learned slots on an Ollama-protocol server with default flags (first run)",
        "4 slots: wall ≤ 1.05 × --server-slots 4, probe ≤ 5 %; 1 slot: 5/5, excellent, "
        "≤ 1.02 × the one-at-a-time bound; a hung agent ends at its timeout + ≤ 0.5 s",
        {
            "profile": "baseline",
            "time_scale": scale,
            "slots": "4 (Ollama's default, the model fits) and 1 (it does not)",
            "repeats": level.repeats,
            "settings": "defaults scaled to the profile (4-slot arms and the plan there: "
            "timeout 100 s × scale); a fresh server and engine per run",
        },
    )
    ratios = [
        a.execution_time_s / b.execution_time_s for a, b in zip(learned, configured, strict=True)
    ]
    hang_over = [
        next(a for a in r.agents if a.name == "SecurityAnalyst").end_s
        - next(a for a in r.agents if a.name == "SecurityAnalyst").start_s
        - (next(a for a in r.agents if a.name == "SecurityAnalyst").client_queue_s or 0.0)
        - hang_timeout
        for r in hangs
    ]
    row.checks += [
        check("4 slots: learned (auto) wall ÷ --server-slots 4 wall", ratios, "×", Target("<=", 1.05)),
        check("4 slots: agents answered (timeout 100 s × scale)",
              [float(r.agents_participated) for r in learned], "of 5", Target(">=", 5.0)),
        check("4 slots: slots learned", [float(r.server_slots or 0) for r in learned], "slots",
              Target("~", 4.0, 0.0)),
        check("4 slots: probe ÷ wall", [_probe_s(r) / r.execution_time_s for r in learned], "×",
              Target("<=", 0.05)),
        check("1 slot: slots learned", [float(r.server_slots or 0) for r in one], "slots",
              Target("~", 1.0, 0.0)),
        check("1 slot: agents answered", [float(r.agents_participated) for r in one], "of 5",
              Target(">=", 5.0)),
        check("1 slot: runs with tier excellent", [1.0 if r.tier == "excellent" else 0.0 for r in one],
              "share", Target(">=", 1.0)),
        check("1 slot: wall ÷ one-at-a-time bound", [r.execution_time_s / _one_at_a_time_s(r) for r in one],
              "×", Target("<=", 1.02)),
        check("4 slots: Quorum wall ÷ the plan's gather wall",
              [r.execution_time_s / p[0] for r, p in zip(learned, plan4, strict=True)], "×",
              Target("<=", 0.6), note=f"the plan's agents answered: {[p[1] for p in plan4]}"),
        check("1 slot: Quorum wall ÷ the plan's gather wall",
              [r.execution_time_s / p[0] for r, p in zip(one, plan1, strict=True)], "×",
              Target("<=", 0.9), note=f"the plan's agents answered: {[p[1] for p in plan1]}"),
        check("hung agent: end − (sent + timeout)", hang_over, "s", Target("<=", 0.5)),
        check("hung agent: the others answered", [float(r.agents_participated) for r in hangs],
              "of 5", Target(">=", 4.0)),
    ]  # fmt: skip
    row.details = {
        "learned_sources": sorted({r.server_slots_source.split(" (")[0] for r in [*learned, *one]}),
        "probe_requests": [len(r.slot_probes) for r in [*learned, *one]],
        "walls_learned": [round(r.execution_time_s, 3) for r in learned],
        "walls_configured": [round(r.execution_time_s, 3) for r in configured],
    }
    return row
