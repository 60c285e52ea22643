"""The fan-out: every agent of a run asked, in parallel or one after another.

Parallel (`FanOut`): all agents are queued at once (the scheduler sends as many as the
server has slots); at quorum, stragglers get `grace_s`, then only the hung and those that
cannot make the deadline are cancelled (`engine/run/stragglers.py` decides). With
overlap, the consolidation starts at quorum and answers that arrive while it runs are
folded in late. No task outlives the fan-out: each cancelled agent returns its own record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from engine.run import stragglers
from engine.run.agents import AgentSpec
from engine.run.call import Outcome, RunContext, deadline_reached, never_started
from engine.run.consolidate import Consolidated, arrived

log = logging.getLogger("engine.run.runner")

Ask = Callable[[AgentSpec], Awaitable[Outcome]]
Consolidate = Callable[[list[Outcome]], Coroutine[Any, Any, Consolidated]]

# How often stragglers are looked at after the grace period (a quarter of it, at least this).
_MIN_TICK_S = 0.05


@dataclass
class Fanned:
    """What a fan-out leaves: every agent's outcome, and (parallel) when the quorum was
    reached, who was folded in late and the consolidation made at quorum (overlap)."""

    outcomes: dict[str, Outcome]
    quorum_reached_s: float | None = None
    late: tuple[str, ...] = ()
    consolidation: Consolidated | None = None


async def one_after_another(specs: tuple[AgentSpec, ...], ask: Ask, ctx: RunContext) -> Fanned:
    """Sequential and single modes: each agent asked when the one before it answered;
    those the deadline leaves no time for are never sent."""
    outcomes: dict[str, Outcome] = {}
    for spec in specs:
        if ctx.deadline_s is not None and ctx.past_deadline():
            why = f"cancelled: {deadline_reached(ctx.deadline_s)} before it started"
            outcomes[spec.name] = never_started(spec, ctx.clock, why)
            continue
        outcomes[spec.name] = await ask(spec)
    return Fanned(outcomes)


@dataclass(frozen=True)
class Patience:
    """How long a parallel fan-out waits: successes needed, then the stragglers' grace."""

    quorum: int
    grace_s: float
    overlap: bool  # consolidate at quorum while the stragglers keep going


class FanOut:
    """One parallel fan-out: owns its agents' tasks, their outcomes so far and why any
    were dropped. `run` is the whole of it; each phase is a method."""

    def __init__(
        self,
        specs: tuple[AgentSpec, ...],
        ask: Ask,
        ctx: RunContext,
        patience: Patience,
        consolidate: Consolidate,
    ) -> None:
        self.specs, self.ask, self.ctx = specs, ask, ctx
        self.patience, self.consolidate = patience, consolidate
        self.outcomes: dict[str, Outcome] = {}
        self.dropped: dict[str, str] = {}  # agent → why we cancelled it
        self.tasks: dict[asyncio.Task[Outcome], str] = {}
        self.pending: set[asyncio.Task[Outcome]] = set()
        self.fanned = Fanned(self.outcomes)

    async def run(self) -> Fanned:
        self.tasks = {
            asyncio.create_task(self._guarded(s), name=f"agent:{s.name}"): s.name
            for s in self.specs
        }
        self.pending = set(self.tasks)
        try:
            await self._until_quorum()
            if self.pending and self.fanned.quorum_reached_s is not None:
                if self.patience.overlap:
                    await self._consolidate_meanwhile()
                else:
                    await self._stragglers()
        finally:
            # Whatever happened (deadline, no quorum by the deadline, our own
            # cancellation), no task outlives the fan-out.
            await self._cancel_the_rest()
        return self.fanned

    async def _guarded(self, spec: AgentSpec) -> Outcome:
        try:
            return await self.ask(spec)
        except asyncio.CancelledError:  # our own fan-out cancels stragglers; keep their record
            if spec.name not in self.ctx.records:
                return never_started(spec, self.ctx.clock, "cancelled before it started")
            run = self.ctx.records[spec.name]
            if spec.name in self.dropped:
                run.error = f"cancelled: {self.dropped[spec.name]}"
            return Outcome(run)

    def _collect(self, done: set[asyncio.Task[Outcome]]) -> None:
        for task in done:
            outcome = task.result()
            self.outcomes[outcome.run.name] = outcome

    def _successes(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.run.status == "ok")

    def _warm_consolidator(self) -> None:
        if self.ctx.warmer is not None:
            self.ctx.warmer.answered(arrived(self.outcomes.values()), stragglers=len(self.pending))

    async def _until_quorum(self) -> None:
        """Everyone, until the quorum succeeded, nobody is left, or the deadline."""
        quorum = min(self.patience.quorum, len(self.specs))
        while self.pending and self._successes() < quorum:
            done, self.pending = await asyncio.wait(
                self.pending, timeout=self.ctx.remaining_s(), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # the deadline passed
                break
            self._collect(done)
            self._warm_consolidator()
        if self._successes() >= quorum:
            self.fanned.quorum_reached_s = self.ctx.clock.now()

    async def _stragglers(self) -> None:
        """After quorum: wait for the rest; past the grace period, drop the off-course."""
        clock, grace_s = self.ctx.clock, self.patience.grace_s
        grace_ends = clock.now() + grace_s
        tick = max(grace_s, _MIN_TICK_S) / 4
        while self.pending and not self.ctx.past_deadline():
            left = self.ctx.remaining_s()
            done, self.pending = await asyncio.wait(
                self.pending, timeout=tick if left is None else min(tick, left)
            )
            self._collect(done)
            if done:
                self._warm_consolidator()
            if clock.now() >= grace_ends:
                self._drop_off_course(stragglers.Norms.of(o.run for o in self.outcomes.values()))

    def _drop_off_course(self, norms: stragglers.Norms) -> None:
        """Cancel the stragglers that are hung or cannot make the deadline, noting why;
        the others are kept."""
        for task in self.pending:
            name = self.tasks[task]
            if name in self.dropped:
                continue
            seen = self.ctx.seen.get(name, stragglers.Progress(queued_s=0.0))  # not yet queued
            why = stragglers.verdict(
                seen, self.ctx.clock.now(), grace_s=self.patience.grace_s,
                deadline_s=self.ctx.deadline_s, norms=norms,
            )  # fmt: skip
            if why is not None:
                self.dropped[name] = why
                log.info("agent %s dropped: %s", name, why)
                task.cancel()

    async def _consolidate_meanwhile(self) -> None:
        """Consolidate what the quorum said while the stragglers keep going; answers that
        arrive before the consolidation ends are folded in late."""
        ok_now = [o for o in self.outcomes.values() if o.run.status == "ok"]
        consolidation = asyncio.create_task(self.consolidate(ok_now), name="consolidation")
        late: list[str] = []
        try:
            while not consolidation.done():
                waiting: set[asyncio.Future[Any]] = {consolidation, *self.pending}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {consolidation}:
                    self.pending.discard(task)
                    outcome: Outcome = task.result()
                    self.outcomes[outcome.run.name] = outcome
                    if outcome.run.status == "ok":
                        late.append(outcome.run.name)
        finally:
            if not consolidation.done():
                consolidation.cancel()
                with suppress(asyncio.CancelledError):
                    await consolidation
        self.fanned.consolidation, self.fanned.late = consolidation.result(), tuple(late)

    async def _cancel_the_rest(self) -> None:
        """Each task still out is cancelled and returns its own record."""
        for task in self.pending:
            if self.ctx.deadline_s is not None and self.ctx.past_deadline():
                self.dropped.setdefault(self.tasks[task], deadline_reached(self.ctx.deadline_s))
            task.cancel()
        if self.pending:
            await asyncio.wait(self.pending)
            self._collect(self.pending)
