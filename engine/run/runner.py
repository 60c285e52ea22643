"""The runner: snapshot → prompts → fan-out → consolidate → result.

This file is the story of the product. A run asks every specialist agent about one
snapshot, in parallel (or one after another, the plan's "before", or a single generalist),
waits for a quorum of them, consolidates their answers and reports where every second
went. It never knows which backend it talks to.

Rules it keeps:
- at most `slots` requests are at the server at once (its slots; `engine/run/slots.py`), so
  every wait is in our own queue, measured; an agent's timeout starts when it is sent;
- at quorum, stragglers that are on course are kept; only the hung and those that
  cannot finish before the deadline are cancelled (`engine/run/stragglers.py`);
- an agent that fails, hangs or writes nonsense degrades itself, never the run;
- no task, stream or connection outlives the run (the backend is closed in `finally`);
- every agent ends with a status: ok, timeout, error or cancelled;
- the deadline bounds the whole run in every mode: each call (agents and the
  consolidation) is cut at it, and so is the wait for a warm-up;
- model text is made safe once, here, where it enters (`engine/sanitize.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from engine import sanitize
from engine.backends.base import Backend, BackendError, ChatRequest, ChatResult
from engine.records import (
    AgentRun,
    AgentStatus,
    AnalysisResult,
    BackendInfo,
    CacheInfo,
    ConsolidationRun,
    Insight,
    Mode,
    Tier,
    TimingSource,
)
from engine.run import use_method
from engine.run.agents import (
    AGENT_SCHEMA,
    CONSOLIDATION_SCHEMA,
    VERDICT_SCHEMA,
    AgentSpec,
    Roster,
    agent_user_prompt,
    consolidation_user_prompt,
    full_consolidation_user_prompt,
    parse_json_answer,
    token_cap,
)
from engine.run.slots import ServerSlots, SlotScheduler
from engine.run.stragglers import Norms, Progress, verdict
from engine.run.warmup import ConsolidatorWarmer
from engine.sources.snapshot import Snapshot

log = logging.getLogger("engine.run.runner")

MODES: tuple[Mode, ...] = ("parallel", "sequential", "single")
ConsolidationStyle = Literal["compact", "full"]
CONSOLIDATION_STYLES: tuple[ConsolidationStyle, ...] = ("compact", "full")


@dataclass(frozen=True)
class RunSettings:
    """How a run behaves. Everything here can change the answer, so all of it is in the cache key."""

    mode: Mode = "parallel"
    quorum: int = 3  # successes needed before stragglers get only `grace_s` more
    grace_s: float = 2.0
    overlap: bool = False  # the plan's Option B: consolidate at quorum, fold late answers in
    agent_timeout_s: float = 30.0
    deadline_s: float | None = None  # the whole run, agents and consolidation
    max_concurrency: int | None = None  # None: as many as there are agents
    # compact: the Consolidator ranks and groups finding ids (a few dozen tokens);
    # full: it rewrites every insight (what Quorum and the plan did before; ≈ 5× slower).
    consolidation: ConsolidationStyle = "compact"
    # After each answer, prefill the consolidation prompt so far in a free server slot
    # (engine/run/warmup.py); only on servers whose slots are known, which keep a KV cache each.
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.quorum < 1:
            raise ValueError(f"quorum: must be ≥ 1, got {self.quorum}")
        if self.grace_s < 0:
            raise ValueError(f"grace: must be ≥ 0 seconds, got {self.grace_s:g}")
        if self.agent_timeout_s <= 0:
            raise ValueError(f"agent timeout: must be > 0 seconds, got {self.agent_timeout_s:g}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline: must be > 0 seconds, got {self.deadline_s:g}")
        if self.consolidation not in CONSOLIDATION_STYLES:
            raise ValueError(
                f"consolidation: must be one of {', '.join(CONSOLIDATION_STYLES)}, "
                f"got {self.consolidation!r}"
            )
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max concurrency: must be ≥ 1, got {self.max_concurrency}")

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProgressEvent:
    """Live progress for a UI: `queued` (waiting for a server slot), `started` (request
    sent), `tokens` (output chunks so far) or `finished`; `waiting` (from
    `Engine.analyze`): this caller waits for the same analysis, already under way."""

    agent: str
    kind: Literal["queued", "started", "tokens", "finished", "waiting"]
    elapsed_s: float
    tokens: int = 0
    status: AgentStatus | None = None


ProgressFn = Callable[[ProgressEvent], None]
BackendFactory = Callable[[], Backend]
# Learns the server's slots with the run's backend, on its clock: (the slots, the probe
# requests as runs).
SlotLearner = Callable[
    [Backend, Callable[[], float]], Awaitable[tuple[ServerSlots, list[AgentRun]]]
]


# --- confidence tiers (the plan's Task 6) ----------------------------------------------

TIER_CONFIDENCE: dict[Tier, int] = {
    "excellent": 95,
    "good": 88,
    "basic": 80,
    "single": 85,
    "fallback": 60,
}


def tier_for(participated: int, total: int) -> Tier:
    """All answered → excellent; ≥ 60 % → good; ≥ 40 % and at least 2 → basic; else fallback.

    For the plan's five agents that is 5 / 3-4 / 2 / 0-1, as the plan specifies.
    """
    if total > 0 and participated >= total:
        return "excellent"
    fraction = participated / total if total else 0.0
    if fraction >= 0.6 and participated >= 2:
        return "good"
    if fraction >= 0.4 and participated >= 2:
        return "basic"
    return "fallback"


# --- one agent call --------------------------------------------------------------------


@dataclass
class _Outcome:
    run: AgentRun
    answer: dict[str, Any] | None = None  # parsed JSON when status is ok


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0


@dataclass
class _Run:
    """What every call of one run shares. `records` and `seen` are filled as calls start,
    so a caller that cancels a call still has what it did."""

    backend: Backend
    clock: _Clock
    progress: ProgressFn | None
    scheduler: SlotScheduler
    records: dict[str, AgentRun]
    seen: dict[str, Progress]
    warmer: ConsolidatorWarmer | None = None
    deadline_s: float | None = None  # the run's deadline on `clock`; None: none


def _run_deadline(ctx: _Run) -> asyncio.Timeout:
    """The run's deadline as a timeout for one wait (no deadline: one that never expires)."""
    if ctx.deadline_s is None:
        return asyncio.timeout(None)
    return asyncio.timeout(max(0.0, ctx.deadline_s - ctx.clock.now()))


def _deadline_reached(deadline_s: float) -> str:
    return f"the run deadline ({deadline_s:g} s) was reached"


async def _call(
    ctx: _Run,
    spec: AgentSpec,
    user: str,
    schema: dict[str, Any],
    timeout_s: float,
    *,
    register: bool = True,
) -> _Outcome:
    """One LLM call: wait for a server slot, then its own timeout, all within the run's
    deadline; every way it can end becomes an AgentRun status (a cancellation from
    outside propagates). The answer is made safe here, where it enters."""
    model = spec.model or ""
    clock = ctx.clock
    run = AgentRun(name=spec.name, role=spec.role, model=model, start_s=clock.now())
    seen = Progress(queued_s=run.start_s)
    if register:
        ctx.records[spec.name], ctx.seen[spec.name] = run, seen
    emit(ctx.progress, ProgressEvent(spec.name, "queued", run.start_s))

    def on_tokens(n: int) -> None:
        seen.on_tokens(n, clock.now())
        emit(ctx.progress, ProgressEvent(spec.name, "tokens", clock.now(), tokens=n))

    request = ChatRequest(
        model=model,
        system=spec.system_prompt,
        user=user,
        agent=spec.name,
        schema=schema,
        max_tokens=spec.max_tokens,
    )
    answer: dict[str, Any] | None = None
    cut = _run_deadline(ctx)
    try:
        async with cut, ctx.scheduler.slot() as waited_s:
            run.client_queue_s = waited_s
            seen.on_dispatch(clock.now())
            emit(ctx.progress, ProgressEvent(spec.name, "started", clock.now()))
            async with asyncio.timeout(timeout_s):
                result = await ctx.backend.chat(request, on_tokens)
        _copy_timings(run, result)
        answer = sanitize.tree(parse_json_answer(result.content))
        if answer is None:
            run.status, run.error = "error", _not_json(result)
    except TimeoutError:
        if cut.expired() and ctx.deadline_s is not None:
            run.status, run.error = "cancelled", f"cancelled: {_deadline_reached(ctx.deadline_s)}"
        else:
            run.status, run.error = "timeout", f"no answer within {timeout_s:g} s of being sent"
    except BackendError as exc:  # its message quotes the server: untrusted text
        run.status, run.error = "error", sanitize.line(exc)
    except asyncio.CancelledError:
        run.status, run.error = "cancelled", "cancelled: the run no longer needed this answer"
        _finish(run, seen, clock, ctx.progress)
        raise
    _finish(run, seen, clock, ctx.progress)
    return _Outcome(run, answer if run.status == "ok" else None)


def _not_json(result: ChatResult) -> str:
    why = f"answer was not JSON ({len(result.content)} chars"
    if result.finish_reason == "length":
        why += f", cut at the token cap after {result.output_tokens or '?'} tokens"
    return why + ")"


def _copy_timings(run: AgentRun, result: ChatResult) -> None:
    run.ttft_s = result.ttft_s
    run.queue_s = result.queue_s
    run.load_s = result.load_s
    run.prefill_s = result.prefill_s
    run.decode_s = result.decode_s
    run.prompt_tokens = result.prompt_tokens
    run.output_tokens = result.output_tokens
    run.cached_tokens = result.cached_tokens
    run.endpoint = result.endpoint
    run.response_chars = len(result.content)


def _finish(run: AgentRun, seen: Progress, clock: _Clock, progress: ProgressFn | None) -> None:
    run.end_s = clock.now()
    run.duration_s = run.end_s - run.start_s
    # A call cut short keeps what was measured: its first token and the tokens streamed.
    if run.ttft_s is None and seen.first_token_s is not None and seen.dispatched_s is not None:
        run.ttft_s = seen.first_token_s - seen.dispatched_s
    if run.output_tokens is None and seen.tokens:
        run.output_tokens = seen.tokens
    log.info(
        "agent %s %s in %.2fs (%s output tokens)",
        run.name,
        run.status,
        run.duration_s,
        run.output_tokens if run.output_tokens is not None else "?",
    )
    emit(progress, ProgressEvent(run.name, "finished", run.end_s, status=run.status))


def emit(progress: ProgressFn | None, event: ProgressEvent) -> None:
    """Tell the UI; a broken callback is logged, never raised (Streamlit's own stop and
    rerun requests, which are not Exceptions, do go through)."""
    if progress is None:
        return
    try:
        progress(event)
    except Exception:  # a broken UI callback must not break the analysis
        log.exception("progress callback failed")


def _never_started(spec: AgentSpec, clock: _Clock, why: str) -> _Outcome:
    now = clock.now()
    run = AgentRun(spec.name, spec.role, spec.model or "", "cancelled", now, now, 0.0, error=why)
    return _Outcome(run)


# --- the fan-out -----------------------------------------------------------------------

# How often stragglers are looked at after the grace period (a quarter of it, at least this).
_MIN_TICK_S = 0.05

_Consolidated = tuple[ConsolidationRun, list[Insight]]
_Consolidate = Callable[[list["_Outcome"]], Coroutine[Any, Any, _Consolidated]]


@dataclass
class _FanOut:
    outcomes: dict[str, _Outcome]
    quorum_reached_s: float | None = None
    late: tuple[str, ...] = ()
    consolidation: tuple[ConsolidationRun, list[Insight]] | None = None  # overlap mode only


async def _fan_out_sequential(
    specs: tuple[AgentSpec, ...], ask: Callable[[AgentSpec], Awaitable[_Outcome]],
    clock: _Clock, deadline: float | None,
) -> _FanOut:  # fmt: skip
    outcomes: dict[str, _Outcome] = {}
    for spec in specs:
        if deadline is not None and clock.now() >= deadline:
            why = f"cancelled: {_deadline_reached(deadline)} before it started"
            outcomes[spec.name] = _never_started(spec, clock, why)
            continue
        outcomes[spec.name] = await ask(spec)
    return _FanOut(outcomes)


async def _fan_out_parallel(
    specs: tuple[AgentSpec, ...],
    ask: Callable[[AgentSpec], Awaitable[_Outcome]],
    settings: RunSettings,
    ctx: _Run,
    deadline: float | None,
    consolidate: _Consolidate,
) -> _FanOut:
    """All agents queued at once (the scheduler sends as many as the server has slots);
    at quorum, stragglers get `grace_s`, then only the hung and those that cannot make
    the deadline are cancelled. With overlap, the consolidation starts at quorum."""
    clock = ctx.clock
    dropped: dict[str, str] = {}  # agent → why we cancelled it

    async def guarded(spec: AgentSpec) -> _Outcome:
        try:
            return await ask(spec)
        except asyncio.CancelledError:  # our own fan-out cancels stragglers; keep their record
            if spec.name not in ctx.records:
                return _never_started(spec, clock, "cancelled before it started")
            run = ctx.records[spec.name]
            if spec.name in dropped:
                run.error = f"cancelled: {dropped[spec.name]}"
            return _Outcome(run)

    tasks = {asyncio.create_task(guarded(s), name=f"agent:{s.name}"): s.name for s in specs}
    pending: set[asyncio.Task[_Outcome]] = set(tasks)
    outcomes: dict[str, _Outcome] = {}
    quorum = min(settings.quorum, len(specs))
    fan = _FanOut(outcomes)

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - clock.now())

    def collect(done: set[asyncio.Task[_Outcome]]) -> None:
        for task in done:
            outcome = task.result()
            outcomes[outcome.run.name] = outcome

    def successes() -> int:
        return sum(1 for o in outcomes.values() if o.run.status == "ok")

    def warm_consolidator() -> None:
        if ctx.warmer is not None:
            ctx.warmer.answered(_arrived(outcomes.values()), stragglers=len(pending))

    try:
        # Phase 1: everyone, until the quorum succeeded, nobody is left, or the deadline.
        while pending and successes() < quorum:
            done, pending = await asyncio.wait(
                pending, timeout=remaining(), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # the deadline passed
                break
            collect(done)
            warm_consolidator()
        if successes() >= quorum:
            fan.quorum_reached_s = clock.now()

        # Phase 2: the stragglers.
        if pending and fan.quorum_reached_s is not None and settings.overlap:
            fan.consolidation, fan.late = await _overlap(pending, outcomes, consolidate)
        elif pending and fan.quorum_reached_s is not None:
            grace_ends = clock.now() + settings.grace_s
            tick = max(settings.grace_s, _MIN_TICK_S) / 4
            while pending and (deadline is None or clock.now() < deadline):
                left = remaining()
                done, pending = await asyncio.wait(
                    pending, timeout=tick if left is None else min(tick, left)
                )
                collect(done)
                if done:
                    warm_consolidator()
                if clock.now() >= grace_ends:
                    norms = Norms.of(o.run for o in outcomes.values())
                    _drop_off_course(pending, tasks, dropped, ctx, settings, deadline, norms)
    finally:
        # Whatever happened (deadline, no quorum by the deadline, our own cancellation),
        # no task outlives the fan-out: each cancelled agent returns its own record.
        for task in pending:
            if deadline is not None and clock.now() >= deadline:
                dropped.setdefault(tasks[task], _deadline_reached(deadline))
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            collect(pending)
    return fan


def _drop_off_course(
    pending: set[asyncio.Task[_Outcome]],
    tasks: Mapping[asyncio.Task[_Outcome], str],
    dropped: dict[str, str],
    ctx: _Run,
    settings: RunSettings,
    deadline: float | None,
    norms: Norms,
) -> None:
    """Cancel the stragglers that are hung or cannot make the deadline, noting why
    (`engine/run/stragglers.py` decides); the others are kept."""
    for task in pending:
        name = tasks[task]
        if name in dropped:
            continue
        seen = ctx.seen.get(name, Progress(queued_s=0.0))  # not even queued yet
        why = verdict(
            seen, ctx.clock.now(), grace_s=settings.grace_s, deadline_s=deadline, norms=norms
        )
        if why is not None:
            dropped[name] = why
            log.info("agent %s dropped: %s", name, why)
            task.cancel()


def _arrived(outcomes: Iterable[_Outcome]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The answers so far as the consolidation prompt lists them: in arrival order."""
    ok = sorted((o for o in outcomes if o.run.status == "ok"), key=lambda o: o.run.end_s)
    return [(o.run.name, o.run.role, o.answer or {}) for o in ok]


async def _overlap(
    pending: set[asyncio.Task[_Outcome]],
    outcomes: dict[str, _Outcome],
    consolidate: _Consolidate,
) -> tuple[tuple[ConsolidationRun, list[Insight]], tuple[str, ...]]:
    """Consolidate what the quorum said while the stragglers keep going; answers that
    arrive before the consolidation ends are folded in late. `pending` shrinks in place."""
    ok_now = [o for o in outcomes.values() if o.run.status == "ok"]
    consolidation = asyncio.create_task(consolidate(ok_now), name="consolidation")
    late: list[str] = []
    try:
        while not consolidation.done():
            waiting: set[asyncio.Future[Any]] = {consolidation, *pending}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {consolidation}:
                pending.discard(task)
                outcome: _Outcome = task.result()
                outcomes[outcome.run.name] = outcome
                if outcome.run.status == "ok":
                    late.append(outcome.run.name)
    finally:
        if not consolidation.done():
            consolidation.cancel()
            with suppress(asyncio.CancelledError):
                await consolidation
    return consolidation.result(), tuple(late)


# --- consolidation ---------------------------------------------------------------------


async def _consolidate(
    ctx: _Run,
    roster: Roster,
    values: Mapping[str, float | None],
    ok: list[_Outcome],
    timeout_s: float,
    style: ConsolidationStyle = "compact",
) -> tuple[ConsolidationRun, list[Insight]]:
    """The Consolidator merges ≥ 2 answers; otherwise, or if it fails, the deterministic
    merge. Compact: it ranks and groups the findings' ids, and the insights are assembled
    from the agents' own findings. Full: it writes every insight itself."""
    arrived = sorted(ok, key=lambda o: o.run.end_s)  # the order the prompt grew in (_arrived)
    answers = [(o.run.name, o.answer or {}) for o in arrived]
    spec = roster.consolidator
    if len(answers) >= 2:
        run, insights = await (_consolidate_full if style == "full" else _consolidate_compact)(
            ctx, spec, values, arrived, timeout_s
        )
        if insights:
            return run, insights
        log.warning(
            "consolidation by %s failed (%s); using deterministic merge", spec.name, run.error
        )
        failed: AgentRun = run
    else:
        now = ctx.clock.now()
        failed = AgentRun(spec.name, spec.role, spec.model or "", "ok", now, now, 0.0)
    merged = (
        use_method.merge_findings(answers) if answers else use_method.insights_from_checks(values)
    )
    fallback = ConsolidationRun(**{**asdict(failed), "method": "fallback"})
    fallback.end_s = ctx.clock.now()
    fallback.duration_s = fallback.end_s - fallback.start_s
    return fallback, merged


async def _consolidate_compact(
    ctx: _Run, spec: AgentSpec, values: Mapping[str, float | None],
    arrived: list[_Outcome], timeout_s: float,
) -> tuple[ConsolidationRun, list[Insight]]:  # fmt: skip
    """The verdict and the insights assembled from it; no insights when it is unusable."""
    findings = use_method.compact_findings(
        [(o.run.name, o.run.role, o.answer or {}) for o in arrived]
    )
    user = consolidation_user_prompt(values, findings, spec.instructions)
    outcome = await _call(ctx, spec, user, VERDICT_SCHEMA, timeout_s, register=False)
    ids = [f.id for f in findings]
    verdict = use_method.read_verdict(outcome.answer, ids) if outcome.answer else None
    run = ConsolidationRun(**asdict(outcome.run), method="llm")
    if verdict is None:
        run.error = run.error or "consolidator's verdict named no finding"
        return run, []
    run.summary, run.verdict_confidence = verdict.summary or None, verdict.confidence
    return run, use_method.assemble_insights(verdict, findings)


async def _consolidate_full(
    ctx: _Run, spec: AgentSpec, values: Mapping[str, float | None],
    arrived: list[_Outcome], timeout_s: float,
) -> tuple[ConsolidationRun, list[Insight]]:  # fmt: skip
    """Every insight written by the Consolidator; no insights when it wrote none."""
    answers = [(o.run.name, o.answer or {}) for o in arrived]
    user = full_consolidation_user_prompt(values, answers, spec.instructions)
    # Its answer is the whole insight list: the verdict's token cap would cut it short.
    spec = replace(spec, max_tokens=token_cap(CONSOLIDATION_SCHEMA))
    outcome = await _call(ctx, spec, user, CONSOLIDATION_SCHEMA, timeout_s, register=False)
    run = ConsolidationRun(**asdict(outcome.run), method="llm")
    insights = use_method.insights_from_output(spec.name, outcome.answer or {})
    if not insights:
        run.error = run.error or "consolidator returned no insights"
    return run, insights


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
) -> AnalysisResult:
    """Analyse one snapshot. The backend is created here, in this loop, and closed here.

    `slots` is how many requests the server runs at once (None: no known limit); the
    run sends no more than that, nor more than `settings.max_concurrency`. With
    `learn_slots` (a server that does not report them) they are learned first, on this
    run's clock (engine/backends/slot_probe.py): its requests are the result's `slot_probes`."""
    clock = _Clock()
    roster = roster.with_default_model(model)
    values = snapshot.quantised(quanta)
    deadline = settings.deadline_s
    slots = slots or ServerSlots(None, "not limited")
    limit = _limit(slots.slots, settings.max_concurrency)
    backend = backend_factory()
    ctx = _Run(
        backend, clock, progress, SlotScheduler(limit), records={}, seen={}, deadline_s=deadline
    )
    probes: list[AgentRun] = []
    try:
        # One-time set-up (HTTP client, TLS context) before the fan-out, so the first
        # agent's request does not leave later than the others.
        await backend.open()
        if learn_slots is not None:
            slots, probes = await learn_slots(backend, clock.now)
            limit = _limit(slots.slots, settings.max_concurrency)
            ctx.scheduler = SlotScheduler(limit)
        if settings.warmup and settings.mode == "parallel" and limit is not None:
            ctx.warmer = ConsolidatorWarmer(
                backend, roster.consolidator, values, ctx.scheduler,
                now=clock.now, timeout_s=settings.agent_timeout_s,
            )  # fmt: skip

        def ask(spec: AgentSpec) -> Awaitable[_Outcome]:
            user = agent_user_prompt(spec.role, values, spec.instructions)
            return _call(ctx, spec, user, AGENT_SCHEMA, settings.agent_timeout_s)

        async def consolidate(ok: list[_Outcome]) -> tuple[ConsolidationRun, list[Insight]]:
            timeout = settings.agent_timeout_s  # the deadline cuts it too (`_call`)
            return await _consolidate(ctx, roster, values, ok, timeout, settings.consolidation)

        if settings.mode == "single":
            specs: tuple[AgentSpec, ...] = (roster.generalist,)
            fan = await _fan_out_sequential(specs, ask, clock, deadline)
        elif settings.mode == "sequential":
            specs = roster.specialists
            fan = await _fan_out_sequential(specs, ask, clock, deadline)
        else:
            specs = roster.specialists
            fan = await _fan_out_parallel(specs, ask, settings, ctx, deadline, consolidate)
            await _settle_warmup(ctx)
        agents_done_s = clock.now()
        log.info(
            "all agents completed in %.2fs (%s, %d/%d ok)",
            agents_done_s,
            settings.mode,
            sum(1 for o in fan.outcomes.values() if o.run.status == "ok"),
            len(specs),
        )

        runs = [fan.outcomes[s.name].run for s in specs]
        ok = [fan.outcomes[s.name] for s in specs if fan.outcomes[s.name].run.status == "ok"]
        consolidation: ConsolidationRun | None
        if settings.mode == "single":
            consolidation = None
            insights = (
                use_method.insights_from_output(ok[0].run.name, ok[0].answer or {}) if ok else []
            )
            if not insights:
                insights = use_method.insights_from_checks(values)
            tier: Tier = "single" if ok else "fallback"
        else:
            if fan.consolidation is not None:
                consolidation, insights = fan.consolidation
                late = [fan.outcomes[n] for n in fan.late]
                if late:  # fold late answers into the consolidated list, deterministically
                    insights = use_method.merge_insights(
                        [*insights, *(i for o in late for i in _insights_of(o))]
                    )
            else:
                consolidation, insights = await consolidate(ok)
            tier = tier_for(len(ok), len(specs))
    finally:
        if ctx.warmer is not None:
            await ctx.warmer.aclose()
        await backend.aclose()

    confidence = TIER_CONFIDENCE[tier]
    for insight in insights:
        insight.confidence = min(insight.confidence, confidence)
    missing = [r.role for r in runs if r.status != "ok"]
    result = AnalysisResult(
        status="success" if ok else "error",
        mode=settings.mode,
        backend=BackendInfo(backend.kind, backend.base_url, model, backend.simulated),
        snapshot_key=snapshot.cache_key(quanta),
        tier=tier,
        confidence=confidence,
        agents_participated=len(ok),
        agents_total=len(specs),
        missing_roles=missing if settings.mode != "single" else [],
        execution_time_s=clock.now(),
        critical_path_s=_critical_path(settings.mode, runs, consolidation, fan.late)
        + _settled_warmup_s(
            runs, ctx.warmer.records if ctx.warmer is not None else [], consolidation
        ),
        critical_path_source=_critical_path_source(runs, consolidation, fan.late),
        cache=CacheInfo(hit=False, age_s=None),
        agents=runs,
        consolidation=consolidation,
        insights=insights,
        collaboration_summary=_summary(settings, runs, consolidation, fan.late),
        quorum_reached_s=fan.quorum_reached_s,
        late_agents=list(fan.late),
        error=None if ok else _first_error(runs),
        created_at=time.time(),
        simulated_profile=simulated_profile if backend.simulated else None,
        server_slots=limit,
        warmups=ctx.warmer.records if ctx.warmer is not None else [],
        server_slots_source=slots.source if limit == slots.slots else _cap_source(slots, limit),
        slot_probes=probes,
    )
    log.info(
        "analysis %s finished in %.2fs: tier %s (%d/%d agents), critical path %.2fs",
        settings.mode,
        result.execution_time_s,
        tier,
        len(ok),
        len(specs),
        result.critical_path_s,
    )
    return result


async def _settle_warmup(ctx: _Run) -> None:
    """A warm-up in flight is the consolidation's own prefill: let it land, but not past
    the run's deadline (the `finally` of `run_analysis` cancels what is left)."""
    if ctx.warmer is None:
        return
    with suppress(TimeoutError):
        async with _run_deadline(ctx):
            await ctx.warmer.settle()


def _insights_of(outcome: _Outcome) -> list[Insight]:
    return use_method.insights_from_output(outcome.run.name, outcome.answer or {})


def _critical_path(
    mode: Mode, runs: list[AgentRun], consolidation: ConsolidationRun | None, late: tuple[str, ...]
) -> float:
    """The length of the chain of calls the run waited for (`timeline.critical_chain`,
    docs/contract.md): each call's own work, queueing excluded, from the server's own
    timings where it reports them (`AgentRun.work_s`). In sequential mode, and on a
    one-slot server, that is every agent; with free slots, the slowest agent. `mode`
    needs no case of its own: the chain follows who waited for whom."""
    from engine.report.timeline import chain_length_s, critical_chain

    del mode
    return chain_length_s(critical_chain(runs, consolidation, late))


def _settled_warmup_s(
    runs: list[AgentRun], warmups: list[AgentRun], consolidation: ConsolidationRun | None
) -> float:
    """A warm-up still prefilling when the last agent answered is finished before the
    consolidation (it is the consolidation's own prefill): that wait is on the path too —
    only up to when the consolidation was sent, so the path stays inside the wall."""
    from engine.report.timeline import sent_s

    if not warmups or not runs or consolidation is None:
        return 0.0
    last_answer = max(r.end_s for r in runs)
    until = min(max(w.end_s for w in warmups), sent_s(consolidation))
    return max(0.0, until - last_answer)


def _critical_path_source(
    runs: list[AgentRun], consolidation: ConsolidationRun | None, late: tuple[str, ...]
) -> TimingSource:
    """`server` when every call on the chain has the server's own timings, `client` when
    none has, `mixed` otherwise. A deterministic merge makes no call and does not count."""
    from engine.report.timeline import critical_chain

    calls = [
        r
        for r in critical_chain(runs, consolidation, late)
        if not (isinstance(r, ConsolidationRun) and r.method != "llm")
    ]
    reported = [r.server_work_s is not None for r in calls]
    if reported and all(reported):
        return "server"
    return "mixed" if any(reported) else "client"


def _limit(server_slots: int | None, max_concurrency: int | None) -> int | None:
    known = [n for n in (server_slots, max_concurrency) if n is not None]
    return min(known) if known else None


def _cap_source(slots: ServerSlots, limit: int | None) -> str:
    return f"--max-concurrency {limit} (server: {slots.source})"


def _first_error(runs: list[AgentRun]) -> str:
    for run in runs:
        if run.error:
            return f"{run.name}: {run.error}"
    return "no agent answered"


def _summary(
    settings: RunSettings,
    runs: list[AgentRun],
    consolidation: ConsolidationRun | None,
    late: tuple[str, ...],
) -> str:
    ok = [r.name for r in runs if r.status == "ok"]
    others = [f"{r.name} {r.status}" for r in runs if r.status != "ok"]
    text = f"{settings.mode.capitalize()} analysis: {len(ok)}/{len(runs)} agents answered"
    if others:
        text += f" ({', '.join(others)})"
    if consolidation is not None:
        how = "by the Consolidator" if consolidation.method == "llm" else "by deterministic merge"
        text += f"; consolidated {how}"
    if late:
        text += f"; folded in late: {', '.join(late)}"
    return text + "."
