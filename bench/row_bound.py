"""P11: the plan's 70 s → 15 s, restated on slots that share compute.

For each profile with its throughput curve (engine/throughput.py), on a simulated server
with a slot per agent (model loaded): the sequential wall (the plan's "before", full
consolidation), the parallel wall (defaults), and the physical bound — the agents' own
work (single-stream, from the profile) scheduled at once under the curve
(`shared_makespan`), plus the consolidation's work: no client can do better on that
server. Projected to real time (÷ the time scale). Reports Quorum's wall ÷ the bound
(target ≤ 1.03) and which hardware class reaches 15 s.
"""

from __future__ import annotations

from bench.levels import Level
from bench.measure import Row, Target, check
from bench.sim import engine_for, running, scaled_settings, sim_config, snapshot, warm_process
from engine.records import AnalysisResult
from engine.simulator import PROFILES
from engine.throughput import Job, shared_makespan

PROFILES_RUN = ("baseline", "cpu-small", "gpu", "ci-smollm2")
FAST = {"gpu", "ci-smollm2"}  # seconds a call, not tens: twice the row's time scale
PLAN_TARGET_S = 15.0
PATIENT_S = 3600.0  # simulated seconds


def bound_s(result: AnalysisResult, profile: str, scale: float) -> float:
    """The parallel run's agents' single-stream work at once under the profile's curve,
    then its consolidation's work (it runs alone)."""
    prof = PROFILES[profile]
    jobs = []
    for a in result.agents:
        tokens = a.output_tokens or 0
        prompt = a.prompt_tokens or 0
        jobs.append(Job(prompt / prof.prefill_tps, tokens / prof.decode_tps))
    consolidation = result.consolidation.work_s if result.consolidation else 0.0
    return shared_makespan(jobs, len(jobs), prof.curve) * scale + consolidation


def run(level: Level) -> Row:
    warm_process()
    row = Row(
        "P11",
        "70 s → 15 s on slots that share compute: sequential, parallel, physical bound",
        "parallel wall ÷ physical bound ≤ 1.03 for every profile; say which reaches 15 s",
        {
            "profile": ", ".join(PROFILES_RUN),
            "time_scale": f"{level.p2_scale:g} (gpu, ci-smollm2: {2 * level.p2_scale:g})",
            "slots": 6,
            "repeats": level.repeats,
            "settings": "defaults scaled to the profile; sequential with the full consolidation",
        },
    )
    reached = []
    for profile in PROFILES_RUN:
        scale = level.p2_scale * (2 if profile in FAST else 1)
        ratios, seq_s, par_s, bounds = [], [], [], []
        with running(sim_config(profile, slots=6, scale=scale)) as server:
            engine = engine_for(server)
            for _ in range(level.repeats):
                before = scaled_settings(
                    scale,
                    mode="sequential",
                    consolidation="full",
                    agent_timeout_s=PATIENT_S * scale,
                )
                seq = engine.analyze(snapshot(), before, refresh=True)
                # Every agent is waited for (the bound is theirs): no timeout cuts one that
                # shares a slow CPU with four others.
                patient = scaled_settings(scale, quorum=5, agent_timeout_s=PATIENT_S * scale)
                par = engine.analyze(snapshot(), patient, refresh=True)
                bound = bound_s(par, profile, scale)
                seq_s.append(seq.execution_time_s / scale)
                par_s.append(par.execution_time_s / scale)
                bounds.append(bound / scale)
                ratios.append(par.execution_time_s / bound)
        row.checks += [
            check(f"{profile}: sequential wall (projected)", seq_s, "s", binding=False),
            check(f"{profile}: parallel wall (projected)", par_s, "s", binding=False),
            check(f"{profile}: physical bound (projected)", bounds, "s", binding=False,
                  note=PROFILES[profile].curve.source),
            check(f"{profile}: parallel wall ÷ physical bound", ratios, "×", Target("<=", 1.03)),
        ]  # fmt: skip
        if sorted(par_s)[len(par_s) // 2] <= PLAN_TARGET_S:
            reached.append(profile)
    row.details = {"reaches_15_s": reached}
    row.notes.append(
        "Reaches the plan's 15 s: "
        + (", ".join(reached) if reached else "none")
        + ". The others get there with a batching server (vLLM-class: 6.6× aggregate decode "
        "at 8 streams, published), the plan's smaller agent models via the roster, or fewer "
        "output tokens; more slots on a CPU that shares two cores do not."
    )
    return row
