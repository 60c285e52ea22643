"""The runner: snapshot → prompts → fan-out → consolidate → result.

This file is the story of the product. A run asks every specialist agent about one
snapshot, in parallel (or one after another, the sequential baseline of
../shared/plan/next-steps-multi-agent-optimization.md, or a single generalist), waits
for a quorum of them, consolidates their answers and reports where every second went.
It never knows which backend it talks to.

Rules it keeps:
- at most `slots` requests are at the server at once (its slots; `engine/run/slots.py`), so
  every wait is in our own queue, measured; an agent's timeout starts when it is sent
  (`engine/run/call.py`);
- at quorum, stragglers that are on course are kept; only the hung and those that
  cannot finish before the deadline are cancelled (`engine/run/fan_out.py`,
  `engine/run/stragglers.py`);
- an agent that fails, hangs or writes nonsense degrades itself, never the run;
- no task, stream or connection outlives the run (the backend is closed in `finally`);
- every agent ends with a status: ok, timeout, error or cancelled;
- the deadline bounds the whole run in every mode: each call (agents and the
  consolidation) is cut at it, and so is the wait for a warm-up;
- model text is made safe once, where it enters (`engine/sanitize.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass

from engine.backends.base import Backend
from engine.records import (
    AgentRun,
    AnalysisResult,
    BackendInfo,
    CacheInfo,
    ConsolidationRun,
    Insight,
    Mode,
    Tier,
)
from engine.run.agents import AGENT_SCHEMA, AgentSpec, Roster, agent_user_prompt
from engine.run.call import Clock, Outcome, RunContext, call
from engine.run.call import ProgressEvent as ProgressEvent
from engine.run.call import ProgressFn as ProgressFn
from engine.run.call import emit as emit
from engine.run.consolidate import Consolidated, consolidate, fold_in_late, single_insights
from engine.run.critical_path import critical_path_s, critical_path_source
from engine.run.fan_out import Fanned, FanOut, Patience, one_after_another
from engine.run.pacing import Pace, ServerModel, pace, slots_source
from engine.run.settings import CONSOLIDATION_STYLES as CONSOLIDATION_STYLES
from engine.run.settings import MODES as MODES
from engine.run.settings import ConsolidationStyle as ConsolidationStyle
from engine.run.settings import RunSettings as RunSettings
from engine.run.slots import ServerSlots, SlotScheduler, limit_of
from engine.run.tiers import TIER_CONFIDENCE, tier_for
from engine.run.warmup import ConsolidatorWarmer
from engine.sources.snapshot import Snapshot

log = logging.getLogger("engine.run.runner")

BackendFactory = Callable[[], Backend]
# Learns the server's slots with the run's backend, on its clock: (the slots, the probe
# requests as runs).
SlotLearner = Callable[
    [Backend, Callable[[], float]], Awaitable[tuple[ServerSlots, list[AgentRun]]]
]


# --- one analysis's steps --------------------------------------------------------------


@dataclass
class _Analysis:
    """What the steps of one analysis share: the calls' context and what they ask about."""

    ctx: RunContext
    roster: Roster
    values: Mapping[str, float | None]
    settings: RunSettings

    def user_prompt(self, spec: AgentSpec) -> str:
        return agent_user_prompt(spec.role, self.values, spec.instructions)

    def ask(self, spec: AgentSpec) -> Awaitable[Outcome]:
        user = self.user_prompt(spec)
        return call(self.ctx, spec, user, AGENT_SCHEMA, self.settings.agent_timeout_s)

    async def consolidate(self, ok: list[Outcome]) -> Consolidated:
        timeout = self.settings.agent_timeout_s  # the deadline cuts it too (`call`)
        return await consolidate(
            self.ctx, self.roster, self.values, ok, timeout, self.settings.consolidation
        )


# (the consolidation, if any; the insights; the tier)
_Concluded = tuple[ConsolidationRun | None, list[Insight], Tier]


async def _in_parallel(a: _Analysis, specs: tuple[AgentSpec, ...]) -> Fanned:
    s = a.settings
    fanned = await FanOut(
        specs, a.ask, a.ctx, Patience(s.quorum, s.grace_s, s.overlap), a.consolidate
    ).run()
    await _settle_warmup(a.ctx)
    return fanned


async def _in_turn(a: _Analysis, specs: tuple[AgentSpec, ...]) -> Fanned:
    return await one_after_another(specs, a.ask, a.ctx)


async def _consolidated(a: _Analysis, fanned: Fanned, ok: list[Outcome], total: int) -> _Concluded:
    """The consolidation made at quorum (overlap, late answers folded in), or one now."""
    if fanned.consolidation is not None:
        consolidation, insights = fanned.consolidation
        insights = fold_in_late(insights, [fanned.outcomes[n] for n in fanned.late])
    else:
        consolidation, insights = await a.consolidate(ok)
    return consolidation, insights, tier_for(len(ok), total)


async def _answered_alone(
    a: _Analysis, fanned: Fanned, ok: list[Outcome], total: int
) -> _Concluded:
    del fanned, total  # one generalist: nothing to consolidate
    return None, single_insights(ok, a.values), "single" if ok else "fallback"


@dataclass(frozen=True)
class _Strategy:
    """What a mode changes, all in one place: who is asked, how, and how it ends."""

    agents: Callable[[Roster], tuple[AgentSpec, ...]]
    fan_out: Callable[[_Analysis, tuple[AgentSpec, ...]], Awaitable[Fanned]]
    conclude: Callable[[_Analysis, Fanned, list[Outcome], int], Awaitable[_Concluded]]
    warms: bool  # warm-ups need free slots while agents are still out
    paces: bool  # agents out at once: fewer than the slots when they would time out
    names_missing: bool  # the result's `missing_roles`: the specialists that did not answer


_STRATEGIES: dict[Mode, _Strategy] = {
    "parallel": _Strategy(lambda r: r.specialists, _in_parallel, _consolidated, True, True, True),
    "sequential": _Strategy(lambda r: r.specialists, _in_turn, _consolidated, False, False, True),
    "single": _Strategy(lambda r: (r.generalist,), _in_turn, _answered_alone, False, False, False),
}


# --- the run ---------------------------------------------------------------------------


async def run_analysis(
    snapshot: Snapshot,
    roster: Roster,
    backend_factory: BackendFactory,
    settings: RunSettings,
    *,
    model: str,
    quanta: Mapping[str, float] | None = None,
    progress: ProgressFn | None = None,
    simulated_profile: str | None = None,
    slots: ServerSlots | None = None,
    learn_slots: SlotLearner | None = None,
    server_model: ServerModel | None = None,
) -> AnalysisResult:
    """Analyse one snapshot. The backend is created here, in this loop, and closed here.

    `slots` is how many requests the server runs at once (None: no known limit); the
    run sends no more than that, nor more than `settings.max_concurrency`. With
    `learn_slots` (a server that does not report them) they are learned first, on this
    run's clock (engine/backends/slot_probe.py): its requests are the result's `slot_probes`.
    With `server_model` (the server's curve and the agents' work), a parallel run sends
    fewer at once when that lets more agents answer within their timeout (engine/run/pacing.py).
    Long: its signature names all a run depends on; the body is the story, step by step."""
    strategy = _STRATEGIES[settings.mode]
    roster = roster.with_default_model(model)
    values = snapshot.quantised(quanta)
    slots = slots or ServerSlots(None, "not limited")
    clock, backend = Clock(), backend_factory()
    ctx = RunContext(
        backend, clock, progress, SlotScheduler(limit_of(slots.slots, settings.max_concurrency)),
        records={}, seen={}, deadline_s=settings.deadline_s,
    )  # fmt: skip
    analysis = _Analysis(ctx, roster, values, settings)
    specs = strategy.agents(roster)
    try:
        # One-time set-up (HTTP client, TLS context) before the fan-out, so the first
        # agent's request does not leave later than the others.
        await backend.open()
        slots, probes, paced = await _at_once(
            analysis, strategy, specs, slots, learn_slots, server_model
        )
        if strategy.warms and settings.warmup and ctx.scheduler.slots is not None:
            ctx.warmer = _warmer(analysis)
        fanned = await strategy.fan_out(analysis, specs)
        ok = [fanned.outcomes[s.name] for s in specs if fanned.outcomes[s.name].run.status == "ok"]
        log.info(
            "all agents completed in %.2fs (%s, %d/%d ok)",
            clock.now(), settings.mode, len(ok), len(specs),
        )  # fmt: skip
        concluded = await strategy.conclude(analysis, fanned, ok, len(specs))
    finally:
        if ctx.warmer is not None:
            await ctx.warmer.aclose()
        await backend.aclose()
    info = BackendInfo(backend.kind, backend.base_url, model, backend.simulated)
    result = _result(
        analysis, strategy, [fanned.outcomes[s.name].run for s in specs], fanned, concluded,
        slots, probes, paced, backend=info, snapshot_key=snapshot.cache_key(quanta),
        simulated_profile=simulated_profile if backend.simulated else None,
    )  # fmt: skip
    log.info(
        "analysis %s finished in %.2fs: tier %s (%d/%d agents), critical path %.2fs",
        settings.mode, result.execution_time_s, result.tier, len(ok), len(specs),
        result.critical_path_s,
    )  # fmt: skip
    return result


async def _at_once(
    a: _Analysis,
    strategy: _Strategy,
    specs: tuple[AgentSpec, ...],
    slots: ServerSlots,
    learn_slots: SlotLearner | None,
    server_model: ServerModel | None,
) -> tuple[ServerSlots, list[AgentRun], Pace | None]:
    """How many requests go out at once: the server's slots (learned first where it does
    not report them, its probe requests returned), under `max_concurrency`, paced where
    more at once would outlast the agents' timeout. Sets the run's scheduler."""
    probes: list[AgentRun] = []
    if learn_slots is not None:
        slots, probes = await learn_slots(a.ctx.backend, a.ctx.clock.now)
        a.ctx.scheduler = SlotScheduler(limit_of(slots.slots, a.settings.max_concurrency))
    paced = _paced(a, strategy, specs, server_model)
    if paced is not None:
        a.ctx.scheduler = SlotScheduler(paced.limit)
    return slots, probes, paced


def _paced(
    a: _Analysis, strategy: _Strategy, specs: tuple[AgentSpec, ...], model: ServerModel | None
) -> Pace | None:
    """Fewer agents at once than the slots, where the server's curve says so — never over
    a limit the user set (`max_concurrency`)."""
    if not strategy.paces or a.settings.max_concurrency is not None:
        return None
    asks = [(spec, a.user_prompt(spec)) for spec in specs]
    return pace(model, asks, a.ctx.scheduler.slots, a.settings.agent_timeout_s)


def _warmer(a: _Analysis) -> ConsolidatorWarmer:
    """Prefills the consolidation prompt in free slots while agents are still out."""
    ctx = a.ctx
    return ConsolidatorWarmer(
        ctx.backend, a.roster.consolidator, a.values, ctx.scheduler,
        now=ctx.clock.now, timeout_s=a.settings.agent_timeout_s,
    )  # fmt: skip


async def _settle_warmup(ctx: RunContext) -> None:
    """A warm-up in flight is the consolidation's own prefill: let it land, but not past
    the run's deadline (the `finally` of `run_analysis` cancels what is left)."""
    if ctx.warmer is None:
        return
    with suppress(TimeoutError):
        async with ctx.deadline_cut():
            await ctx.warmer.settle()


def _result(
    a: _Analysis,
    strategy: _Strategy,
    runs: list[AgentRun],
    fanned: Fanned,
    concluded: _Concluded,
    slots: ServerSlots,
    probes: list[AgentRun],
    paced: Pace | None,
    *,
    backend: BackendInfo,
    snapshot_key: str,
    simulated_profile: str | None,
) -> AnalysisResult:
    """The result of one analysis (docs/contract.md); its insights capped at the tier's
    confidence. Long: one line per field of the contract."""
    consolidation, insights, tier = concluded
    confidence = TIER_CONFIDENCE[tier]
    for insight in insights:
        insight.confidence = min(insight.confidence, confidence)
    ok = [r for r in runs if r.status == "ok"]
    warmups = a.ctx.warmer.records if a.ctx.warmer is not None else []
    limit = a.ctx.scheduler.slots
    return AnalysisResult(
        status="success" if ok else "error",
        mode=a.settings.mode,
        backend=backend,
        snapshot_key=snapshot_key,
        tier=tier,
        confidence=confidence,
        agents_participated=len(ok),
        agents_total=len(runs),
        missing_roles=[r.role for r in runs if r.status != "ok"] if strategy.names_missing else [],
        execution_time_s=a.ctx.clock.now(),
        critical_path_s=critical_path_s(runs, consolidation, fanned.late, warmups),
        critical_path_source=critical_path_source(runs, consolidation, fanned.late),
        cache=CacheInfo(hit=False, age_s=None),
        agents=runs,
        consolidation=consolidation,
        insights=insights,
        collaboration_summary=_summary(a.settings.mode, runs, consolidation, fanned.late),
        quorum_reached_s=fanned.quorum_reached_s,
        late_agents=list(fanned.late),
        error=None if ok else _first_error(runs),
        created_at=time.time(),
        simulated_profile=simulated_profile,
        server_slots=limit,
        warmups=warmups,
        server_slots_source=slots_source(slots, limit, paced),
        slot_probes=probes,
    )


def _first_error(runs: list[AgentRun]) -> str:
    for run in runs:
        if run.error:
            return f"{run.name}: {run.error}"
    return "no agent answered"


def _summary(
    mode: Mode, runs: list[AgentRun], consolidation: ConsolidationRun | None, late: tuple[str, ...]
) -> str:
    ok = [r.name for r in runs if r.status == "ok"]
    others = [f"{r.name} {r.status}" for r in runs if r.status != "ok"]
    text = f"{mode.capitalize()} analysis: {len(ok)}/{len(runs)} agents answered"
    if others:
        text += f" ({', '.join(others)})"
    if consolidation is not None:
        how = "by the Consolidator" if consolidation.method == "llm" else "by deterministic merge"
        text += f"; consolidated {how}"
    if late:
        text += f"; folded in late: {', '.join(late)}"
    return text + "."
