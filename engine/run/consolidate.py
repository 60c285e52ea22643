"""Consolidation: the agents' answers become one list of insights.

Compact (the default): the Consolidator ranks and groups the findings' ids and the
insights are assembled from the agents' own findings. Full: it writes every insight
itself (≈ 5× slower). Fallback: with fewer than two answers, or when the Consolidator
fails, the deterministic merge of `engine/run/use_method.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from typing import Any

from engine.records import AgentRun, ConsolidationRun, Insight
from engine.run import use_method
from engine.run.agents import (
    CONSOLIDATION_SCHEMA,
    VERDICT_SCHEMA,
    AgentSpec,
    Roster,
    consolidation_user_prompt,
    full_consolidation_user_prompt,
    token_cap,
)
from engine.run.call import Outcome, RunContext, call
from engine.run.settings import ConsolidationStyle

log = logging.getLogger("engine.run.runner")

Consolidated = tuple[ConsolidationRun, list[Insight]]


def arrived(outcomes: Iterable[Outcome]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """The answers so far as the consolidation prompt lists them: in arrival order."""
    ok = sorted((o for o in outcomes if o.run.status == "ok"), key=lambda o: o.run.end_s)
    return [(o.run.name, o.run.role, o.answer or {}) for o in ok]


async def consolidate(
    ctx: RunContext,
    roster: Roster,
    values: Mapping[str, float | None],
    ok: list[Outcome],
    timeout_s: float,
    style: ConsolidationStyle = "compact",
) -> Consolidated:
    """The Consolidator merges ≥ 2 answers; otherwise, or if it fails, the deterministic
    merge. Compact: it ranks and groups the findings' ids, and the insights are assembled
    from the agents' own findings. Full: it writes every insight itself."""
    in_order = sorted(ok, key=lambda o: o.run.end_s)  # the order the prompt grew in (`arrived`)
    answers = [(o.run.name, o.answer or {}) for o in in_order]
    spec = roster.consolidator
    if len(answers) >= 2:
        by_llm = _consolidate_full if style == "full" else _consolidate_compact
        run, insights = await by_llm(ctx, spec, values, in_order, timeout_s)
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
    ctx: RunContext, spec: AgentSpec, values: Mapping[str, float | None],
    in_order: list[Outcome], timeout_s: float,
) -> Consolidated:  # fmt: skip
    """The verdict and the insights assembled from it; no insights when it is unusable."""
    findings = use_method.compact_findings(
        [(o.run.name, o.run.role, o.answer or {}) for o in in_order]
    )
    user = consolidation_user_prompt(values, findings, spec.instructions)
    outcome = await call(ctx, spec, user, VERDICT_SCHEMA, timeout_s, register=False)
    ids = [f.id for f in findings]
    verdict = use_method.read_verdict(outcome.answer, ids) if outcome.answer else None
    run = ConsolidationRun(**asdict(outcome.run), method="llm")
    if verdict is None:
        run.error = run.error or "consolidator's verdict named no finding"
        return run, []
    run.summary, run.verdict_confidence = verdict.summary or None, verdict.confidence
    return run, use_method.assemble_insights(verdict, findings)


async def _consolidate_full(
    ctx: RunContext, spec: AgentSpec, values: Mapping[str, float | None],
    in_order: list[Outcome], timeout_s: float,
) -> Consolidated:  # fmt: skip
    """Every insight written by the Consolidator; no insights when it wrote none."""
    answers = [(o.run.name, o.answer or {}) for o in in_order]
    user = full_consolidation_user_prompt(values, answers, spec.instructions)
    # Its answer is the whole insight list: the verdict's token cap would cut it short.
    spec = replace(spec, max_tokens=token_cap(CONSOLIDATION_SCHEMA))
    outcome = await call(ctx, spec, user, CONSOLIDATION_SCHEMA, timeout_s, register=False)
    run = ConsolidationRun(**asdict(outcome.run), method="llm")
    insights = use_method.insights_from_output(spec.name, outcome.answer or {})
    if not insights:
        run.error = run.error or "consolidator returned no insights"
    return run, insights


def insights_of(outcome: Outcome) -> list[Insight]:
    """One agent's own answer as insights (single mode, and late answers)."""
    return use_method.insights_from_output(outcome.run.name, outcome.answer or {})


def fold_in_late(insights: list[Insight], late: list[Outcome]) -> list[Insight]:
    """Answers that arrived while the quorum's consolidation ran, merged into its list
    deterministically (overlap mode)."""
    if not late:
        return insights
    return use_method.merge_insights([*insights, *(i for o in late for i in insights_of(o))])


def single_insights(ok: list[Outcome], values: Mapping[str, float | None]) -> list[Insight]:
    """Single mode: the generalist's own insights, or the checks' when it gave none."""
    insights = insights_of(ok[0]) if ok else []
    return insights or use_method.insights_from_checks(values)
