"""How many agents to send at once when the server's slots share compute.

A server's slots are not free capacity: on a CPU (or a GPU for prefill) every running
sequence slows the others down (engine/throughput.py). Four agents at once on the CPU
curve measured here each run ≈ 3× slower than alone while the server does only ≈ 1.3×
the work, so on the `baseline` profile each of them outlasts the 30 s agent timeout and
the run ends with one answer of five. Sent two at a time, all five answer, barely later.

`pace` predicts the fan-out on the server's curve (`fitting_concurrency`) from each
agent's single-stream work, and lowers the number sent at once only when fewer would let
more agents end within their timeout. It needs a `ServerModel`: the curve and a work
estimate, which the service knows for the embedded simulated server (its profile) and
learns for a real one from its measured runs. Without one, nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.backends.server_slots import ServerSlots
from engine.run.agents import AgentSpec
from engine.throughput import Job, ThroughputCurve, concurrency_plans, fitting_concurrency

# The single-stream work of asking `spec` with the user prompt `user` (seconds).
WorkEstimate = Callable[[AgentSpec, str], Job]


@dataclass(frozen=True)
class ServerModel:
    """What is known of how the server runs calls side by side."""

    curve: ThroughputCurve
    work: WorkEstimate
    source: str  # where the curve and the work estimate come from, in words


@dataclass(frozen=True)
class Pace:
    """Send `limit` at once instead of the server's slots, and why."""

    limit: int
    reason: str


def pace(
    model: ServerModel | None,
    asks: Sequence[tuple[AgentSpec, str]],
    limit: int | None,
    timeout_s: float,
) -> Pace | None:
    """A lower limit than `limit` when the curve says fewer at once answer more agents
    within `timeout_s`; None when the limit stands (or nothing is known to decide)."""
    if model is None or limit is None or model.curve.flat or len(asks) < 2:
        return None
    wide = min(limit, len(asks))
    if wide < 2:
        return None
    jobs = [model.work(spec, user) for spec, user in asks]
    chosen = fitting_concurrency(jobs, wide, model.curve, timeout_s)
    at_once = concurrency_plans(jobs, wide, model.curve, timeout_s)[-1]
    # Only for answers: a slightly shorter makespan at fewer streams is within the curve's
    # noise (its aggregate at 4 and 5 streams was measured 1.28× and 1.08×).
    if chosen.limit >= wide or chosen.fits <= at_once.fits:
        return None
    n = len(jobs)
    return Pace(
        chosen.limit,
        f"paced to {chosen.limit} at a time: by {model.source}, {wide} at once would each "
        f"take up to ≈ {at_once.longest_s:.3g} s, past the {timeout_s:g} s agent timeout "
        f"({at_once.fits} of {n} would answer; {chosen.limit} at a time {chosen.fits} of {n}, "
        f"≈ {chosen.makespan_s:.3g} s in all)",
    )


def slots_source(slots: ServerSlots, limit: int | None, paced: Pace | None) -> str:
    """The result's `server_slots_source`: where the number sent at once came from."""
    if paced is not None:
        return f"{paced.reason} (server: {slots.slots} slots, {slots.source})"
    if limit == slots.slots:
        return slots.source
    return f"--max-concurrency {limit} (server: {slots.source})"
