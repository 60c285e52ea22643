"""P5: a heavy tail. One agent is 3× slower (the simulator's `slow` fault: 3× prefill
and decode); a quorum run against waiting for all.

The quorum run is quorum 3 with `--overlap` (the plan's option B: consolidate at quorum,
fold in answers that arrive before it ends, cancel the rest). Plain quorum 3 with the
default settings is reported beside it: it now *keeps* a straggler that is streaming on
course (never drop an agent a plain `gather` would keep), so it saves nothing here by
design; a user who wants the quorum's answer sooner says so with `--overlap` or
`--deadline`.

Both arms get an agent timeout long enough for the slow agent to finish (4× the default,
scaled), so "wait for all" really waits for all instead of timing the straggler out.
Each arm has its own server with the same configuration and seed (same draws).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from bench.levels import Level
from bench.measure import Row, Target, check
from bench.sim import (
    DEFAULT_TIMEOUT_S,
    agents_phase_s,
    analysis,
    engine_for,
    interleaved,
    running,
    scaled_settings,
    sim_config,
    warm_process,
)
from engine.records import AnalysisResult

SLOW_AGENT = "ReliabilityEngineer"
PROFILES = ("baseline", "fast-consolidator")


def run(level: Level) -> Row:
    warm_process()
    scale = level.p5_scale
    patient = DEFAULT_TIMEOUT_S * 4 * scale  # the slow agent takes ≈ 33 s at scale 1
    arms = {
        "quorum 3, overlap": scaled_settings(
            scale, quorum=3, overlap=True, agent_timeout_s=patient
        ),
        "quorum 3 (defaults: on-course stragglers kept)": scaled_settings(
            scale, quorum=3, agent_timeout_s=patient
        ),
        "wait for all (quorum 5)": scaled_settings(scale, quorum=5, agent_timeout_s=patient),
    }
    with ExitStack() as stack:
        calls: list[tuple[str, Callable[[], AnalysisResult]]] = []
        for profile in PROFILES:
            config = sim_config(profile, scale=scale, faults=[(SLOW_AGENT, "slow")])
            for arm, settings in arms.items():
                engine = engine_for(stack.enter_context(running(config)))
                calls.append((f"{profile}: {arm}", analysis(engine, settings)))
        runs = interleaved(calls, level.repeats)
    row = Row(
        "P5",
        f"heavy tail ({SLOW_AGENT} 3× slower): quorum run vs wait-for-all",
        "quorum wall ≤ 0.5 × wait-for-all wall",
        {
            "profile": "baseline (headline), fast-consolidator (context)",
            "time_scale": scale,
            "slots": 6,
            "repeats": level.repeats,
            "settings": f"quorum 3 with --overlap (headline) and without, vs quorum 5; "
            f"grace {2.0 * scale:g} s (the default 2 s × scale); "
            f"agent timeout {patient:g} s (4× the default, scaled)",
        },
    )
    for profile in PROFILES:
        quorum, wait_all = (
            runs[f"{profile}: quorum 3, overlap"],
            runs[f"{profile}: wait for all (quorum 5)"],
        )
        kept = runs[f"{profile}: quorum 3 (defaults: on-course stragglers kept)"]
        pairs = list(zip(quorum, wait_all, strict=True))
        headline = profile == "baseline"
        row.checks += [
            check(
                f"{profile}: quorum 3 with defaults (straggler kept) ÷ wait-for-all wall",
                [
                    k.execution_time_s / w.execution_time_s
                    for k, w in zip(kept, wait_all, strict=True)
                ],
                "×",
                binding=False,
                note="≈ 1 by design: a straggler on course is kept, as a plain gather keeps it",
            ),
            check(
                f"{profile}: quorum (overlap) wall ÷ wait-for-all wall",
                [q.execution_time_s / w.execution_time_s for q, w in pairs],
                "×",
                Target("<=", 0.5),
                binding=headline,
            ),
            check(
                f"{profile}: agents phase only, quorum ÷ wait-for-all",
                [agents_phase_s(q) / agents_phase_s(w) for q, w in pairs],
                "×",
                binding=False,
                note="what quorum itself saves, before the consolidation both arms pay",
            ),
            check(
                f"{profile}: consolidation's share of the quorum run's wall",
                [_consolidation_s(q) / q.execution_time_s for q in quorum],
                "×",
                binding=False,
            ),
            check(
                f"{profile}: quorum run, projected to time scale 1",
                [q.execution_time_s / scale for q in quorum],
                "s",
                binding=False,
            ),
            check(
                f"{profile}: wait for all, projected to time scale 1",
                [w.execution_time_s / scale for w in wait_all],
                "s",
                binding=False,
            ),
        ]
        row.details[profile] = {
            "quorum_tiers": sorted({q.tier for q in quorum}),
            "quorum_agents_answered": sorted({q.agents_participated for q in quorum}),
            "wait_all_tiers": sorted({w.tier for w in wait_all}),
            "slow_agent_status_in_quorum_run": sorted(
                {a.status for q in quorum for a in q.agents if a.name == SLOW_AGENT}
            ),
        }
    return row


def _consolidation_s(result: AnalysisResult) -> float:
    return result.consolidation.duration_s if result.consolidation else 0.0
