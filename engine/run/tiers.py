"""Confidence tiers: how much of the roster answered, and what confidence that earns
(docs/contract.md)."""

from __future__ import annotations

from engine.records import Tier

TIER_CONFIDENCE: dict[Tier, int] = {
    "excellent": 95,
    "good": 88,
    "basic": 80,
    "single": 85,
    "fallback": 60,
}


def tier_for(participated: int, total: int) -> Tier:
    """All answered → excellent; ≥ 60 % → good; ≥ 40 % and at least 2 → basic; else fallback.

    For five agents that is 5 / 3-4 / 2 / 0-1, the tiers of
    ../shared/plan/next-steps-multi-agent-optimization.md (docs/contract.md).
    """
    if total > 0 and participated >= total:
        return "excellent"
    fraction = participated / total if total else 0.0
    if fraction >= 0.6 and participated >= 2:
        return "good"
    if fraction >= 0.4 and participated >= 2:
        return "basic"
    return "fallback"
