"""Which stragglers to give up on once the quorum has answered.

The plan's rule — at quorum, give the others a grace period, then cancel them — drops
agents that are merely late: behind a one-slot server (Ollama's default) the fourth and
fifth agents are still queued or mid-answer when the grace ends, though they would
finish in time. A peer that simply waits (`asyncio.gather`) keeps them. So after the
grace Quorum cancels only an agent that is

- **hung**: sent, but no output for far longer than the agents that answered needed, or
  silent mid-answer for far longer than its own pace between tokens; or
- **out of time**: its projected finish (from its own token rate, or the answered
  agents' typical work if it has not started) lies beyond the run's deadline.

Everything else — streaming on course, or queued with time left — is kept; the
per-agent timeout (from dispatch) and the run deadline still bound it. Pure logic: the
runner feeds it what it has seen (`Progress`) and acts on the verdict.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from engine.records import AgentRun

# How many of an agent's own typical gaps between tokens count as a stall mid-answer.
STALL_GAPS = 8
# A silent agent is hung after this many times the slowest first token seen, plus grace.
FIRST_TOKEN_FACTOR = 2.0
# Wall-clock jitter (a busy client, the network, a GC pause) that is never called a hang.
JITTER_S = 0.25


@dataclass
class Progress:
    """What the runner has seen of one agent, in seconds on the run's clock."""

    queued_s: float
    dispatched_s: float | None = None
    first_token_s: float | None = None
    last_token_s: float | None = None
    tokens: int = 0  # output chunks so far (≈ tokens)

    def on_dispatch(self, now: float) -> None:
        self.dispatched_s = now

    def on_tokens(self, count: int, now: float) -> None:
        if self.first_token_s is None:
            self.first_token_s = now
        self.last_token_s = now
        self.tokens = count

    def gap_s(self) -> float | None:
        """Its own mean time between tokens, once it has streamed two or more."""
        if self.first_token_s is None or self.last_token_s is None or self.tokens < 2:
            return None
        return (self.last_token_s - self.first_token_s) / (self.tokens - 1)


@dataclass(frozen=True)
class Norms:
    """What the agents that answered looked like (None where none has)."""

    first_token_s: float | None  # slowest time from dispatch to first token
    output_tokens: float | None  # median answer length
    work_s: float | None  # median time from dispatch to answer

    @classmethod
    def of(cls, answered: Iterable[AgentRun]) -> Norms:
        runs = [r for r in answered if r.status == "ok"]
        ttfts = [r.ttft_s for r in runs if r.ttft_s is not None]
        tokens = [r.output_tokens for r in runs if r.output_tokens]
        work = [r.duration_s - (r.client_queue_s or 0.0) for r in runs]
        return cls(
            first_token_s=max(ttfts) if ttfts else None,
            output_tokens=statistics.median(tokens) if tokens else None,
            work_s=statistics.median(work) if work else None,
        )


def verdict(
    agent: Progress, now: float, *, grace_s: float, deadline_s: float | None, norms: Norms
) -> str | None:
    """Why `agent` should be cancelled now, or None to keep it."""
    if agent.dispatched_s is None:
        return _queued(now, deadline_s, norms)
    if agent.first_token_s is None:
        return _silent(agent.dispatched_s, now, grace_s, deadline_s, norms)
    return _streaming(agent, now, grace_s, deadline_s, norms)


def _queued(now: float, deadline_s: float | None, norms: Norms) -> str | None:
    if deadline_s is not None and norms.work_s is not None and now + norms.work_s > deadline_s:
        return (
            f"still queued for a server slot; an answer takes ≈ {norms.work_s:.1f} s, "
            f"which ends after the run deadline ({deadline_s:g} s)"
        )
    return None


def _silent(
    dispatched_s: float, now: float, grace_s: float, deadline_s: float | None, norms: Norms
) -> str | None:
    silent_s = now - dispatched_s
    if norms.first_token_s is not None:
        allowed = FIRST_TOKEN_FACTOR * norms.first_token_s + grace_s + JITTER_S
        if silent_s > allowed:
            return (
                f"hung: no output {silent_s:.1f} s after its request was sent "
                f"(the answered agents' first token came within {norms.first_token_s:.1f} s)"
            )
    if deadline_s is not None and norms.work_s is not None:
        projected = dispatched_s + norms.work_s
        if projected > deadline_s:
            return (
                f"projected to finish at ≈ {projected:.1f} s, after the run deadline "
                f"({deadline_s:g} s)"
            )
    return None


def _streaming(
    agent: Progress, now: float, grace_s: float, deadline_s: float | None, norms: Norms
) -> str | None:
    assert agent.last_token_s is not None
    gap = agent.gap_s()
    quiet_s = now - agent.last_token_s
    if quiet_s > grace_s + JITTER_S + STALL_GAPS * (gap or 0.0):
        return f"hung: no output for {quiet_s:.1f} s mid-answer ({agent.tokens} tokens so far)"
    if deadline_s is not None and gap is not None and gap > 0:
        expected = max(norms.output_tokens or agent.tokens, agent.tokens)
        projected = now + (expected - agent.tokens) * gap
        if projected > deadline_s:
            return (
                f"projected to finish at ≈ {projected:.1f} s at its own pace "
                f"({1 / gap:.0f} tokens/s), after the run deadline ({deadline_s:g} s)"
            )
    return None
