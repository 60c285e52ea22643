"""One LLM call of a run: wait for a server slot, send, and turn every way it can end
into an `AgentRun` status (ok, timeout, error or cancelled). Also what every call of one
run shares (`RunContext`) and the live progress events a UI follows.

Model text is made safe here, where it enters (`engine/sanitize.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine import sanitize
from engine.backends.base import Backend, BackendError, ChatRequest, ChatResult
from engine.records import AgentRun, AgentStatus
from engine.run.agents import AgentSpec, parse_json_answer
from engine.run.slots import SlotScheduler
from engine.run.stragglers import Progress
from engine.run.warmup import ConsolidatorWarmer

log = logging.getLogger("engine.run.runner")


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


def emit(progress: ProgressFn | None, event: ProgressEvent) -> None:
    """Tell the UI; a broken callback is logged, never raised (Streamlit's own stop and
    rerun requests, which are not Exceptions, do go through)."""
    if progress is None:
        return
    try:
        progress(event)
    except Exception:  # a broken UI callback must not break the analysis
        log.exception("progress callback failed")


@dataclass
class Outcome:
    run: AgentRun
    answer: dict[str, Any] | None = None  # parsed JSON when status is ok


class Clock:
    """Seconds since the run began: every time in a result is on this clock."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0


@dataclass
class RunContext:
    """What every call of one run shares. `records` and `seen` are filled as calls start,
    so a caller that cancels a call still has what it did."""

    backend: Backend
    clock: Clock
    progress: ProgressFn | None
    scheduler: SlotScheduler
    records: dict[str, AgentRun]
    seen: dict[str, Progress]
    warmer: ConsolidatorWarmer | None = None
    deadline_s: float | None = None  # the run's deadline on `clock`; None: none

    def deadline_cut(self) -> asyncio.Timeout:
        """The run's deadline as a timeout for one wait (no deadline: one that never expires)."""
        if self.deadline_s is None:
            return asyncio.timeout(None)
        return asyncio.timeout(max(0.0, self.deadline_s - self.clock.now()))

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline_s is None else max(0.0, self.deadline_s - self.clock.now())

    def past_deadline(self) -> bool:
        return self.deadline_s is not None and self.clock.now() >= self.deadline_s


def deadline_reached(deadline_s: float) -> str:
    return f"the run deadline ({deadline_s:g} s) was reached"


async def call(
    ctx: RunContext,
    spec: AgentSpec,
    user: str,
    schema: dict[str, Any],
    timeout_s: float,
    *,
    register: bool = True,
) -> Outcome:
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
    cut = ctx.deadline_cut()
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
            run.status, run.error = "cancelled", f"cancelled: {deadline_reached(ctx.deadline_s)}"
        else:
            run.status, run.error = "timeout", f"no answer within {timeout_s:g} s of being sent"
    except BackendError as exc:  # its message quotes the server: untrusted text
        run.status, run.error = "error", sanitize.line(exc)
    except asyncio.CancelledError:
        run.status, run.error = "cancelled", "cancelled: the run no longer needed this answer"
        _finish(run, seen, clock, ctx.progress)
        raise
    _finish(run, seen, clock, ctx.progress)
    return Outcome(run, answer if run.status == "ok" else None)


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


def _finish(run: AgentRun, seen: Progress, clock: Clock, progress: ProgressFn | None) -> None:
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


def never_started(spec: AgentSpec, clock: Clock, why: str) -> Outcome:
    now = clock.now()
    run = AgentRun(spec.name, spec.role, spec.model or "", "cancelled", now, now, 0.0, error=why)
    return Outcome(run)
