"""P1: the engine's own overhead, wall ÷ critical path, for 5 to 50 agents.

One server with more slots than agents (the consolidator included), so nothing queues
and the engine's reported critical path is what a perfect scheduler would take. The
critical path is the engine's `critical_path_s`, which comes from the server's own
timings (load + prefill + decode; `critical_path_source` = server), so any waiting the
client does before a request reaches the server counts as overhead here.
"""

from __future__ import annotations

import statistics

from bench.levels import Level
from bench.measure import Row, Target, check
from bench.sim import (
    engine_for,
    roster_of,
    running,
    sim_config,
    snapshot,
    warm_process,
)
from engine.run.runner import RunSettings

TARGETS = {5: Target("<=", 1.02), 50: Target("<=", 1.05)}


def run(level: Level) -> Row:
    ns, scale = level.p1_ns, level.p1_scale
    warm_process()
    config = sim_config("baseline", slots=max(ns) + 1, scale=scale)
    ratios: dict[int, list[float]] = {n: [] for n in ns}
    walls: dict[int, list[float]] = {n: [] for n in ns}
    agents_phase: dict[int, list[float]] = {n: [] for n in ns}
    slowest_server: dict[int, list[float]] = {n: [] for n in ns}
    in_flight: dict[int, list[int]] = {n: [] for n in ns}  # most requests the server held
    with running(config) as server:
        engines = {n: engine_for(server, roster=roster_of(n)) for n in ns}
        settings = {n: RunSettings(quorum=n) for n in ns}  # wait for every agent
        for _ in range(level.p1_repeats):
            for n in ns:  # interleaved, so drift on the machine hits every N alike
                server.stats.reset()
                result = engines[n].analyze(snapshot(), settings[n])
                in_flight[n].append(server.stats.snapshot().max_in_flight)
                ratios[n].append(result.execution_time_s / result.critical_path_s)
                assert result.critical_path_source == "server", result.critical_path_source
                walls[n].append(result.execution_time_s)
                agents_phase[n].append(max(a.end_s for a in result.agents))
                slowest_server[n].append(
                    max((a.prefill_s or 0) + (a.decode_s or 0) for a in result.agents)
                )
    row = Row(
        "P1",
        "engine overhead: parallel wall ÷ critical path (from the server's own timings)",
        "≤ 1.02 at 5 agents, ≤ 1.05 at 50",
        {
            "profile": "baseline",
            "time_scale": scale,
            "slots": max(ns) + 1,
            "agents": list(ns),
            "repeats": level.p1_repeats,
            "settings": "RunSettings(quorum=N), defaults otherwise",
        },
    )
    for n in ns:
        row.checks.append(check(f"N={n}", ratios[n], "×", TARGETS.get(n)))
    row.details = {
        "wall_s": {n: sorted(v) for n, v in walls.items()},
        "agents_phase_s": {n: sorted(v) for n, v in agents_phase.items()},
        "slowest_agent_server_work_s": {n: sorted(v) for n, v in slowest_server.items()},
        "server_max_in_flight": {n: max(v) for n, v in in_flight.items()},
    }
    for n in ns:
        if max(in_flight[n]) < n:  # the server had free slots, yet fewer requests arrived
            row.notes.append(
                f"N={n}: at most {max(in_flight[n])} requests ever reached the server at once "
                f"(it had {max(ns) + 1} slots); the agents phase took "
                f"{statistics.median(agents_phase[n]):.2f} s for "
                f"{max(slowest_server[n]):.2f} s of slowest server work: that client-side wait "
                "is in the ratio above (the critical path is the server's)."
            )
    return row
