"""Where every second of a run went, as data a chart can draw (no Streamlit, no plotly).

A run's agents become waterfall rows: each row is the agent's bar from `start_s` to
`end_s`, split into the wait in Quorum's own queue for a server slot, then the server's
own report (queue → load → prefill → decode) laid end to end, with whatever the server does not explain shown as `other` (client, network,
parsing). A server that reports nothing gets one `total` segment, so every row's
segments always add up to the agent's duration.

Also here: which agent is on the critical path (the chain itself is the run's,
engine/run/critical_path.py), whether a "parallel" run was in fact serialised by the
server, and what more server slots would give. The comparison is engine/report/compare.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.backends.registry import BACKENDS
from engine.records import AgentRun, AgentStatus, AnalysisResult, ConsolidationRun

# The critical chain is the run's (it computes `critical_path_s` by it); its existing
# readers keep importing it from here.
from engine.run.critical_path import chain_length_s as chain_length_s
from engine.run.critical_path import critical_chain as critical_chain
from engine.run.critical_path import sent_s as sent_s
from engine.run.critical_path import waited_for as waited_for
from engine.simulator import PROFILES
from engine.throughput import (
    BATCHING_CURVE,
    CPU_CURVE,
    Job,
    ThroughputCurve,
    concurrency_at,
    shared_makespan,
)

SegmentKind = Literal["wait", "queue", "load", "prefill", "decode", "other", "total"]
SEGMENT_KINDS: tuple[SegmentKind, ...] = (
    "wait",
    "queue",
    "load",
    "prefill",
    "decode",
    "other",
    "total",
)
SEGMENT_LABELS: dict[SegmentKind, str] = {
    "wait": "waiting in Quorum for a free server slot",
    "queue": "queue on the server",
    "load": "model load",
    "prefill": "prefill (prompt)",
    "decode": "decode (output)",
    "other": "other / network",
    "total": "no breakdown reported",
}
CONSOLIDATION_LABEL = "Consolidation"
WARMUP_LABEL = "Consolidation warm-up"
PROBE_LABEL = "Slot probe"

# Below this, a remainder is clock noise between client and server, not a segment.
_EPSILON_S = 1e-4
# A parallel run whose agents queued for at least this share of its wall time was
# effectively run one at a time by the server.
SERIALISED_SHARE = 0.5


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Row:
    """One waterfall row: an agent, or the consolidation step."""

    label: str  # the agent's name, or CONSOLIDATION_LABEL
    agent: str
    role: str
    status: AgentStatus
    start_s: float
    duration_s: float
    segments: tuple[Segment, ...]
    critical: bool
    consolidation: bool
    late: bool
    prompt_tokens: int | None
    output_tokens: int | None
    ttft_s: float | None
    error: str | None
    method: str | None  # consolidation only: "llm" or "fallback"
    cached_tokens: int | None = None  # prompt tokens the server's prefix cache saved
    warmup: bool = False  # a prefill-only request that warmed the consolidation's prompt
    probe: bool = False  # a one-token request that learned the server's slots

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Timeline:
    rows: tuple[Row, ...]
    execution_time_s: float
    critical_path_s: float
    quorum_reached_s: float | None
    critical_agent: str | None

    @property
    def span_s(self) -> float:
        """The right edge a chart needs: the run's wall time or the last bar, whichever is later."""
        return max([self.execution_time_s, *(r.end_s for r in self.rows)], default=0.0)


def segments(run: AgentRun) -> tuple[Segment, ...]:
    """The run's bar split into the server's timing report; widths always sum to its duration."""
    duration = max(0.0, run.duration_s)
    report: tuple[tuple[SegmentKind, float | None], ...] = (
        ("wait", run.client_queue_s),
        ("queue", run.queue_s),
        ("load", run.load_s),
        ("prefill", run.prefill_s),
        ("decode", run.decode_s),
    )
    reported = [(kind, max(0.0, value)) for kind, value in report if value is not None]
    if all(kind == "wait" for kind, _ in reported):
        # The server reported nothing: after our own wait, one unexplained bar.
        wait = min(duration, sum(v for _, v in reported))
        total = Segment("total", run.start_s + wait, duration - wait)
        return (
            (Segment("wait", run.start_s, wait), total)
            if wait > _EPSILON_S
            else (Segment("total", run.start_s, duration),)
        )
    explained = sum(v for _, v in reported)
    if explained > duration and explained > 0:
        # The server's clock says more than the client's: keep the proportions, fit the bar.
        scale = duration / explained
        reported = [(k, v * scale) for k, v in reported]
        explained = duration
    out: list[Segment] = []
    cursor = run.start_s
    for kind, width in reported:
        out.append(Segment(kind, cursor, width))
        cursor += width
    remainder = duration - explained
    if remainder > _EPSILON_S or not out:
        out.append(Segment("other", cursor, remainder))
    elif remainder > 0:
        # Fold clock noise into the last segment so the widths still add up exactly.
        last = out[-1]
        out[-1] = Segment(last.kind, last.start_s, last.duration_s + remainder)
    return tuple(out)


def result_chain(result: AnalysisResult) -> list[AgentRun]:
    return critical_chain(result.agents, result.consolidation, result.late_agents)


def critical_agent(result: AnalysisResult) -> str | None:
    """The agent the consolidation waited for: the last agent on the critical chain."""
    agents = [r for r in result_chain(result) if not isinstance(r, ConsolidationRun)]
    return agents[-1].name if agents else None


def unlimited_slots_s(result: AnalysisResult) -> float:
    """A lower bound with a slot for every agent: the slowest waited-for agent's work plus
    the consolidation's (queueing excluded)."""
    slowest = max((a.work_s for a in waited_for(result)), default=0.0)
    return slowest + (result.consolidation.work_s if result.consolidation else 0.0)


def _row(
    run: AgentRun, *, label: str, critical: bool, late: bool, consolidation: bool,
    warmup: bool = False, probe: bool = False,
) -> Row:  # fmt: skip
    return Row(
        label=label,
        agent=run.name,
        role=run.role,
        status=run.status,
        start_s=run.start_s,
        duration_s=max(0.0, run.duration_s),
        segments=segments(run),
        critical=critical,
        consolidation=consolidation,
        late=late,
        prompt_tokens=run.prompt_tokens,
        output_tokens=run.output_tokens,
        ttft_s=run.ttft_s,
        error=run.error,
        method=run.method if isinstance(run, ConsolidationRun) else None,
        cached_tokens=run.cached_tokens,
        warmup=warmup,
        probe=probe,
    )


def timeline(result: AnalysisResult) -> Timeline:
    """Rows: the slot probes (they come first), the agents in the order they were asked,
    then the warm-ups, the consolidation last."""
    slowest = critical_agent(result)
    late = set(result.late_agents)
    on_path = {r.name for r in result_chain(result) if not isinstance(r, ConsolidationRun)}
    rows = [
        _row(p, label=f"{PROBE_LABEL} {i}", critical=False, late=False, consolidation=False,
             probe=True)
        for i, p in enumerate(result.slot_probes, start=1)
    ]  # fmt: skip
    rows += [
        _row(a, label=a.name, critical=a.name in on_path, late=a.name in late, consolidation=False)
        for a in result.agents
    ]
    for i, warm in enumerate(result.warmups, start=1):
        label = WARMUP_LABEL if len(result.warmups) == 1 else f"{WARMUP_LABEL} {i}"
        rows.append(
            _row(warm, label=label, critical=False, late=False, consolidation=False, warmup=True)
        )
    if result.consolidation is not None:
        rows.append(
            _row(
                result.consolidation,
                label=CONSOLIDATION_LABEL,
                critical=True,  # the run always waits for it
                late=False,
                consolidation=True,
            )
        )
    return Timeline(
        rows=tuple(rows),
        execution_time_s=result.execution_time_s,
        critical_path_s=result.critical_path_s,
        quorum_reached_s=result.quorum_reached_s,
        critical_agent=slowest,
    )


# --- was the parallel run really parallel? ------------------------------------------------


@dataclass(frozen=True)
class Serialisation:
    queued_s: float  # all agents' server queue time, summed
    work_s: float  # all agents' time not spent queueing, summed
    wall_s: float
    serialised: bool

    @property
    def share(self) -> float:
        return self.queued_s / self.wall_s if self.wall_s > 0 else 0.0


def serialisation(result: AnalysisResult) -> Serialisation:
    """A parallel run whose agents waited for server slots (in Quorum's queue or the
    server's) for at least half its wall time, summed over agents, ran one at a time,
    e.g. on OLLAMA_NUM_PARALLEL=1."""
    queued = sum((a.queue_s or 0.0) + (a.client_queue_s or 0.0) for a in result.agents)
    work = sum(a.work_s for a in result.agents)
    wall = result.execution_time_s
    serialised = (
        result.mode == "parallel"
        and len(result.agents) > 1
        and wall > 0
        and queued >= SERIALISED_SHARE * wall
    )
    return Serialisation(queued, work, wall, serialised)


# --- one slot: what more would give ---------------------------------------------------------


@dataclass(frozen=True)
class SlotAdvice:
    """A parallel run the server's slots made (mostly) one-at-a-time, and what more slots
    would give, estimated from the agents' own measured work on the server's throughput
    curve (engine/throughput.py): its slots share compute, so N slots are not N× faster."""

    slots: int
    source: str
    agents: int
    wall_s: float
    estimated_s: float  # the same run with one slot per agent, on the curve
    curve_source: str = ""  # which curve: learned from this server's runs, or a profile's
    aggregate_x: float = 1.0  # the curve's decode aggregate at one slot per agent
    batching_s: float | None = None  # the same work on a batching server's curve

    @property
    def helps(self) -> bool:
        return self.estimated_s < HELPS_SHARE * self.wall_s

    def sentence(self) -> str:
        ran = "one at a time" if self.slots == 1 else f"at most {self.slots} at a time"
        text = (
            f"The server ran the {self.agents} agents {ran} (server slots: {self.slots}, "
            f"{self.source}). On its throughput curve ({self.curve_source}), {self.agents} "
            f"slots would take ≈ {self.estimated_s:.1f} s instead of {self.wall_s:.1f} s"
        )
        if self.helps:
            text += (
                f": start the server with {self.agents} slots (Ollama: "
                f"OLLAMA_NUM_PARALLEL={self.agents}; llama.cpp: --parallel {self.agents}) "
                "and memory for them."
            )
        else:
            verb = "would slow it down" if self.estimated_s > self.wall_s else "would not help"
            text += (
                f": its slots share the same compute ({self.aggregate_x:.1f}× the throughput "
                f"of one stream with {self.agents} at once), so more slots {verb}."
            )
        if self.batching_s is not None and self.batching_s < BATCHING_SHARE * self.estimated_s:
            text += (
                f" A batching server (vLLM, SGLang) would give more than more slots can: "
                f"≈ {self.batching_s:.1f} s for the same work at its published "
                f"{BATCHING_CURVE.aggregate('decode', self.agents):.1f}× aggregate decode."
            )
        return text


HELPS_SHARE = 0.9  # more slots "help" when they save at least a tenth of the wall
BATCHING_SHARE = 0.8  # a batching server is worth naming when it saves a fifth more


def makespan(works: list[float], slots: int) -> float:
    """Finish time of `works` on `slots` slots, longest first to the least-loaded slot
    (slots at full single-stream speed: an upper bound on what slots can give)."""
    loads = [0.0] * max(1, slots)
    for work in sorted(works, reverse=True):
        loads[loads.index(min(loads))] += work
    return max(loads)


def run_curve(result: AnalysisResult) -> tuple[ThroughputCurve, str]:
    """The curve to predict this server by: learned from its own measured runs where there
    are any (`server_curve`), the simulated profile's otherwise, else the CPU curve
    measured here (said so: nothing is known about this server's yet)."""
    learned = result.server_curve
    if learned:
        try:
            curve = ThroughputCurve(
                tuple(learned["prefill"]), tuple(learned["decode"]), str(learned["source"])
            )
            return curve, curve.source
        except (KeyError, TypeError, ValueError):
            pass
    profile = PROFILES.get(result.simulated_profile or "")
    if profile is not None:
        return profile.curve, f"the simulated {profile.name} profile's: {profile.curve.source}"
    return CPU_CURVE, (
        "assumed: no run of this server with more than one stream yet, so the CPU curve "
        f"{CPU_CURVE.source.removeprefix('measured here: ')}"
    )


def _spans(result: AnalysisResult) -> list[tuple[float, float]]:
    calls = [*result.agents, *result.warmups]
    if result.consolidation is not None and result.consolidation.method == "llm":
        calls.append(result.consolidation)
    return [(c.start_s + (c.client_queue_s or 0.0), c.end_s) for c in calls]


def single_stream_job(
    run: AgentRun,
    spans: list[tuple[float, float]],
    curve: ThroughputCurve,
    *,
    cold_kind: str | None = None,
) -> Job:
    """`run`'s work as it would take alone: its measured prefill and decode, each sped up
    by the curve's factor for the streams that were running beside it. `cold_kind` (the
    backend's kind): in a slot of its own that holds no prefix yet, so its whole prompt
    is prefilled at the rate it measured (a new slot's KV cache is empty)."""
    if run.server_work_s is None:
        return Job(0.0, run.work_s)
    decode, prefill = run.decode_s or 0.0, run.prefill_s or 0.0
    evaluated = evaluated_tokens(run, cold_kind) if cold_kind is not None else None
    if evaluated and run.cached_tokens and prefill > 0:
        prefill *= (evaluated + run.cached_tokens) / evaluated
    n_decode = concurrency_at(run.end_s - decode / 2, spans)
    n_prefill = concurrency_at(run.end_s - decode - prefill / 2, spans)
    return Job(
        prefill * curve.factor("prefill", n_prefill) + (run.load_s or 0.0),
        decode * curve.factor("decode", n_decode),
    )


def curve_samples(result: AnalysisResult) -> dict[str, dict[int, list[float]]]:
    """Per-stream rates this run measured, by kind and by how many streams ran beside
    each call: what `engine.throughput.learned_curve` learns a server's curve from.
    Calls too short to time well (a few tokens) are left out."""
    out: dict[str, dict[int, list[float]]] = {"prefill": {}, "decode": {}}
    spans = _spans(result)
    calls: list[AgentRun] = [a for a in result.agents if a.status == "ok"]
    if result.consolidation is not None and result.consolidation.method == "llm":
        calls.append(result.consolidation)
    for run in calls:
        decode, prefill = run.decode_s or 0.0, run.prefill_s or 0.0
        if run.output_tokens and run.output_tokens >= MIN_SAMPLE_TOKENS and decode > 0:
            n = concurrency_at(run.end_s - decode / 2, spans)
            out["decode"].setdefault(n, []).append(run.output_tokens / decode)
        evaluated = evaluated_tokens(run, result.backend.kind)
        if evaluated and evaluated >= MIN_SAMPLE_TOKENS and prefill > 0:
            n = concurrency_at(run.end_s - decode - prefill / 2, spans)
            out["prefill"].setdefault(n, []).append(evaluated / prefill)
    return out


MIN_SAMPLE_TOKENS = 16


def single_stream_work(result: AnalysisResult, curve: ThroughputCurve) -> dict[str, list[float]]:
    """Each answered agent's work as it would take alone, `[prefill_s, decode_s]` by name
    (its measured work sped up by `curve`, the server's, for the streams beside it): what
    the next run on this server paces its fan-out with (engine/run/pacing.py). Only agents
    with the server's own timings: a client-side duration cannot be split."""
    if result.mode != "parallel":
        return {}
    spans = _spans(result)
    out: dict[str, list[float]] = {}
    for run in result.agents:
        if run.status == "ok" and run.server_work_s is not None:
            job = single_stream_job(run, spans, curve)
            out[run.name] = [round(job.prefill_s, 4), round(job.decode_s, 4)]
    return out


def slot_advice(result: AnalysisResult) -> SlotAdvice | None:
    """Advice when a parallel run had fewer server slots than agents and its agents waited
    for them for a real share of the run; None otherwise (or for a cache hit's old run)."""
    agents = [a for a in result.agents if a.status != "cancelled" or a.work_s > 0]
    slots = result.server_slots
    if result.mode != "parallel" or slots is None or slots >= len(result.agents) or not agents:
        return None
    waited = sum((a.client_queue_s or 0.0) + (a.queue_s or 0.0) for a in result.agents)
    span = timeline(result).span_s
    if span <= 0 or waited < SERIALISED_SHARE * span:
        return None
    curve, curve_source = run_curve(result)
    spans = _spans(result)
    jobs = [single_stream_job(a, spans, curve) for a in agents]
    # With a slot per agent, the agents beyond the slots there are now land in new slots
    # that hold no prefix yet: they prefill their whole prompt.
    kind = result.backend.kind
    wider = jobs[:slots] + [
        single_stream_job(a, spans, curve, cold_kind=kind) for a in agents[slots:]
    ]
    consolidation = result.consolidation.work_s if result.consolidation else 0.0
    now = shared_makespan(jobs, slots, curve) + consolidation
    wide = shared_makespan(wider, len(result.agents), curve) + consolidation
    batching = shared_makespan(wider, len(result.agents), BATCHING_CURVE) + consolidation
    # Scale the estimates by what the run really took over its own estimate: overheads stay.
    ratio = span / now if now > 0 else 1.0
    return SlotAdvice(
        slots, result.server_slots_source, len(result.agents), span, wide * ratio,
        curve_source, curve.aggregate("decode", len(result.agents)), batching * ratio,
    )  # fmt: skip


def after_last_agent_s(result: AnalysisResult) -> float:
    """How long the run went on after the last agent it waited for answered: what the
    consolidation adds to the agents' phase (0 when it has no agents)."""
    answered = [a.end_s for a in waited_for(result)]
    if not answered:
        return 0.0
    end = result.consolidation.end_s if result.consolidation is not None else 0.0
    return max(0.0, max(end, result.execution_time_s) - max(answered))


def evaluated_tokens(run: AgentRun, backend_kind: str) -> int | None:
    """Prompt tokens the server really evaluated for `run`. Ollama (and the simulated
    server) report only those; OpenAI-compatible servers report the whole prompt, from
    which the cached prefix is subtracted (docs/contract.md; the registry's
    `prompt_tokens_include_cached`)."""
    if run.prompt_tokens is None:
        return None
    known = BACKENDS.get(backend_kind)  # a pool of mixed kinds ("ollama+openai") is none
    if known is not None and known.prompt_tokens_include_cached and run.cached_tokens is not None:
        return max(0, run.prompt_tokens - run.cached_tokens)
    return run.prompt_tokens


# --- projection to real time (the simulator's time scale) ---------------------------------

PROJECTED_LABEL = "projected to real time (simulated)"


def projection_scale(simulated: bool, time_scale: float) -> float | None:
    """The time scale to project by, or None when the times are already real: a real
    server, or the simulator at scale 1."""
    if not simulated or time_scale <= 0 or time_scale == 1:
        return None
    return time_scale


def projected_s(seconds: float, time_scale: float) -> float:
    """A simulated duration at `time_scale` as the profile's real seconds (÷ the scale)."""
    if time_scale <= 0:
        raise ValueError(f"time scale: must be > 0, got {time_scale:g}")
    return seconds / time_scale
