"""Warm the Consolidator's slot while stragglers run.

Every prompt about one snapshot starts with the same bytes, and the consolidation prompt
only grows as agents answer (`agents.consolidation_prefix`). A server that keeps each
slot's KV cache (llama.cpp with `cache_prompt`, its default; Ollama, which sends a
request to the slot with the longest common prefix) therefore prefills the consolidation
prompt piece by piece if, after each answer, it is sent the prompt so far as a
prefill-only request: one output token (`max_tokens` 1, Ollama `num_predict` 1). The
final consolidation then prefills only what the last agent added.

A warm-up is an optimisation, never a dependency: it never raises, and its result says
how many prompt tokens the server evaluated and how many it reused. The caller decides
when to send one (only when a slot is free, so that it never delays an agent) and
cancels it when the run ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from engine import sanitize
from engine.backends.base import WARMUP_SUFFIX as WARMUP_SUFFIX  # re-exported for callers
from engine.backends.base import Backend, BackendError, ChatRequest
from engine.records import AgentRun, AgentStatus
from engine.run import use_method
from engine.run.agents import AgentSpec, consolidation_prefix
from engine.run.slots import SlotScheduler


@dataclass(frozen=True)
class WarmupResult:
    """What one warm-up cost. Token counts are the server's own (None: not reported;
    Ollama reports only the evaluated ones)."""

    evaluated_tokens: int | None
    cached_tokens: int | None
    duration_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluated_tokens": self.evaluated_tokens,
            "cached_tokens": self.cached_tokens,
            "duration_s": self.duration_s,
            "error": self.error,
        }


def warmup_request(spec: AgentSpec, user: str) -> ChatRequest:
    """A prefill-only request for `user`: the Consolidator's model and system prompt, one
    output token, no schema (a grammar does not change what is cached), not streamed."""
    return ChatRequest(
        model=spec.model or "",
        system=spec.system_prompt,
        user=user,
        agent=spec.name + WARMUP_SUFFIX,
        schema=None,
        max_tokens=1,
        stream=False,
    )


async def prefill(backend: Backend, request: ChatRequest, timeout_s: float) -> WarmupResult:
    """Send one prefill-only request; a failure or timeout is reported, not raised."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            result = await backend.chat(request)
    except TimeoutError:
        return WarmupResult(
            None, None, time.perf_counter() - started, f"no answer in {timeout_s:g} s"
        )
    except BackendError as exc:
        # Its message quotes the server: untrusted text, made safe where it enters.
        return WarmupResult(None, None, time.perf_counter() - started, sanitize.line(exc))
    return WarmupResult(result.prompt_tokens, result.cached_tokens, time.perf_counter() - started)


async def warm_consolidator(
    backend: Backend,
    consolidator: AgentSpec,
    values: Mapping[str, float | None],
    arrived: Sequence[tuple[str, str, Mapping[str, Any]]],
    *,
    timeout_s: float,
) -> WarmupResult:
    """Prefill the consolidation prompt as far as the answers so far: `arrived` is
    (agent, role, parsed answer) in the order they arrived, as the runner's
    consolidation orders them (by each agent's end time)."""
    findings = use_method.compact_findings(arrived)
    user = consolidation_prefix(values, findings, consolidator.instructions)
    return await prefill(backend, warmup_request(consolidator, user), timeout_s)


# --- the runner's side: when to warm ------------------------------------------------------

Arrived = Sequence[tuple[str, str, Mapping[str, Any]]]


class ConsolidatorWarmer:
    """Keeps the Consolidator's prompt prefilled while stragglers run.

    After each answer but the last, `answered` sends the consolidation prompt so far —
    only if a server slot is free and no agent waits for one (`SlotScheduler.try_slot`),
    and one at a time: answers that arrive meanwhile are covered by the next warm-up.
    `settle` lets the warm-up in flight finish before the consolidation (it is prefilling
    exactly what the consolidation needs); `aclose` cancels whatever is left. Every
    warm-up becomes an AgentRun record for the waterfall.
    """

    def __init__(
        self,
        backend: Backend,
        consolidator: AgentSpec,
        values: Mapping[str, float | None],
        scheduler: SlotScheduler,
        *,
        now: Callable[[], float],
        timeout_s: float,
    ) -> None:
        self._backend = backend
        self._spec = consolidator
        self._values = values
        self._scheduler = scheduler
        self._now = now
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._latest: list[tuple[str, str, Mapping[str, Any]]] = []
        self._sent = 0  # answers covered by the last warm-up sent
        self._stragglers = 0  # agents still out at the last answer
        self.records: list[AgentRun] = []

    def answered(self, arrived: Arrived, stragglers: int) -> None:
        """`arrived`: every answer so far, in arrival order; `stragglers`: agents still out."""
        self._latest, self._stragglers = list(arrived), stragglers
        if stragglers > 0 and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._warm(), name="consolidator-warmup")

    async def _warm(self) -> None:
        # Once the last agent has answered, the consolidation itself is next: no warm-up.
        while len(self._latest) > self._sent and self._stragglers > 0:
            async with self._scheduler.try_slot() as free:
                if not free:
                    return  # an agent needs the slot more; the next answer tries again
                arrived = list(self._latest)
                self._sent = len(arrived)
                run = AgentRun(
                    self._spec.name + WARMUP_SUFFIX,
                    "warm-up",
                    self._spec.model or "",
                    start_s=self._now(),
                )
                self.records.append(run)
                try:
                    result = await warm_consolidator(
                        self._backend, self._spec, self._values, arrived, timeout_s=self._timeout_s
                    )
                except asyncio.CancelledError:
                    _close(run, self._now(), "cancelled", "the run ended before it finished")
                    raise
                run.prompt_tokens, run.cached_tokens = result.evaluated_tokens, result.cached_tokens
                _close(run, self._now(), "ok" if result.ok else "error", result.error)

    async def settle(self) -> None:
        """Let the warm-up in flight finish (bounded by its own timeout)."""
        if self._task is not None and not self._task.done():
            with suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


def _close(run: AgentRun, now: float, status: AgentStatus, error: str | None) -> None:
    run.status, run.error = status, error
    run.end_s, run.duration_s = now, now - run.start_s
