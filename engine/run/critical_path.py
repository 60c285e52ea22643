"""The chain of calls a run waited for, and its length: the result's `critical_path_s`.

The runner computes it when a run ends; the report (engine/report/timeline.py) marks the
same chain on the waterfall. It lives here, below both, so that the run never needs the
report (the layers go report → run, README's "Architecture").
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.records import AgentRun, AnalysisResult, ConsolidationRun, TimingSource

# A call sent within this long after another ended was released by it (clock noise).
_CHAIN_SLACK_S = 1e-3


def waited_for(result: AnalysisResult) -> list[AgentRun]:
    """The agents the run actually waited for (the same set the runner's critical path uses)."""
    late = set(result.late_agents)
    return [a for a in result.agents if a.status != "cancelled" and a.name not in late]


def sent_s(run: AgentRun) -> float:
    """When the call's request left Quorum: asked at `start_s`, after its wait for a slot."""
    return run.start_s + max(0.0, run.client_queue_s or 0.0)


def critical_chain(
    runs: Sequence[AgentRun], consolidation: ConsolidationRun | None, late: Sequence[str] = ()
) -> list[AgentRun]:
    """The chain of calls the run waited for, first to last (docs/contract.md).

    It ends with the consolidation (or, without one, the last waited-for agent to end).
    Each call's predecessor is the waited-for agent that ended last before the call was
    sent: on a server with free slots nothing did, and the chain is the slowest agent and
    the consolidation; on a one-slot server (or in sequential mode) each agent waited for
    the one before it, and the chain is all of them. Calls in the chain never overlap in
    time, so its length never exceeds the wall."""
    skipped = set(late)
    pool = [r for r in runs if r.status != "cancelled" and r.name not in skipped]
    last: AgentRun | None = consolidation
    if last is None:
        if not pool:
            return []
        last = max(pool, key=lambda r: r.end_s)
        pool.remove(last)
    chain = [last]
    while True:
        before = [r for r in pool if r.end_s <= sent_s(chain[-1]) + _CHAIN_SLACK_S]
        if not before:
            break
        chain.append(max(before, key=lambda r: r.end_s))
        pool.remove(chain[-1])
    chain.reverse()
    return chain


def chain_length_s(chain: Sequence[AgentRun]) -> float:
    """Each call's own work (`AgentRun.work_s`, queueing excluded), never more than the
    time between its send and its end, so the sum fits inside the run's wall time."""
    return sum(min(r.work_s, max(0.0, r.end_s - sent_s(r))) for r in chain)


def critical_path_s(
    runs: list[AgentRun],
    consolidation: ConsolidationRun | None,
    late: Sequence[str],
    warmups: list[AgentRun],
) -> float:
    """The length of the chain of calls the run waited for (docs/contract.md): each call's
    own work, queueing excluded, from the server's own timings where it reports them
    (`AgentRun.work_s`). In sequential mode, and on a one-slot server, that is every
    agent; with free slots, the slowest agent. No mode needs a case of its own: the chain
    follows who waited for whom. A warm-up the consolidation waited for counts too."""
    chain = chain_length_s(critical_chain(runs, consolidation, late))
    return chain + settled_warmup_s(runs, warmups, consolidation)


def settled_warmup_s(
    runs: list[AgentRun], warmups: list[AgentRun], consolidation: ConsolidationRun | None
) -> float:
    """A warm-up still prefilling when the last agent answered is finished before the
    consolidation (it is the consolidation's own prefill): that wait is on the path too —
    only up to when the consolidation was sent, so the path stays inside the wall."""
    if not warmups or not runs or consolidation is None:
        return 0.0
    last_answer = max(r.end_s for r in runs)
    until = min(max(w.end_s for w in warmups), sent_s(consolidation))
    return max(0.0, until - last_answer)


def critical_path_source(
    runs: list[AgentRun], consolidation: ConsolidationRun | None, late: Sequence[str]
) -> TimingSource:
    """`server` when every call on the chain has the server's own timings, `client` when
    none has, `mixed` otherwise. A deterministic merge makes no call and does not count."""
    calls = [
        r
        for r in critical_chain(runs, consolidation, late)
        if not (isinstance(r, ConsolidationRun) and r.method != "llm")
    ]
    reported = [r.server_work_s is not None for r in calls]
    if reported and all(reported):
        return "server"
    return "mixed" if any(reported) else "client"
