"""`Engine.compare`'s answer, typed: the runs it made, the speedup, and the tables read
from them (the runs' rows, the consolidation variants' rows).

`Comparison.to_dict` is the `compare --json` contract (docs/contract.md): the runs'
analyze objects in the order they ran, then `speedup`; `from_dict` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.records import AnalysisResult
from engine.report.timeline import (
    Serialisation,
    after_last_agent_s,
    evaluated_tokens,
    serialisation,
    unlimited_slots_s,
)
from engine.run.settings import CONSOLIDATION_VARIANTS

COMPARE_RUNS: tuple[str, ...] = ("single", "sequential", "parallel", "cached")
# Engine.compare's runs, in the order it makes them: the four runs, then the variants.
COMPARE_STEPS: tuple[str, ...] = (*COMPARE_RUNS, *(v.key for v in CONSOLIDATION_VARIANTS))


@dataclass(frozen=True)
class CompareRow:
    run: str
    wall_s: float
    critical_path_s: float
    confidence: int
    tier: str
    agents: str  # "5/5"
    cache_hit: bool


@dataclass(frozen=True)
class ConsolidationRow:
    key: str
    label: str
    wall_s: float
    after_last_agent_s: float
    evaluated_tokens: int | None  # the final consolidation call's
    cached_tokens: int | None
    warmups: int  # warm-up requests sent
    warmup_evaluated_tokens: int | None  # summed over the warm-ups (None: none reported)
    method: str | None  # "llm" or "fallback"
    tier: str


def _speedup(runs: Mapping[str, AnalysisResult]) -> float | None:
    """Sequential wall ÷ parallel wall, to three places (None without both, or a 0 s wall)."""
    seq, par = runs.get("sequential"), runs.get("parallel")
    if seq is None or par is None or par.execution_time_s <= 0:
        return None
    return round(seq.execution_time_s / par.execution_time_s, 3)


@dataclass(frozen=True)
class Comparison:
    """The runs of one comparison by name (`COMPARE_STEPS` order) and its speedup."""

    runs: dict[str, AnalysisResult]
    speedup: float | None  # sequential wall ÷ parallel wall

    @classmethod
    def of(cls, runs: Mapping[str, AnalysisResult]) -> Comparison:
        """The comparison of these runs, its speedup measured from their walls."""
        return cls(dict(runs), _speedup(runs))

    def to_dict(self) -> dict[str, Any]:
        """`compare --json`: every run's analyze object, then `speedup`."""
        out: dict[str, Any] = {name: r.to_dict() for name, r in self.runs.items()}
        out["speedup"] = self.speedup
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """Read `compare --json` back; a missing speedup is measured from the runs."""
        runs = {
            name: AnalysisResult.from_dict(data[name]) for name in COMPARE_STEPS if name in data
        }
        raw = data.get("speedup")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return cls(runs, float(raw))
        return cls.of(runs)

    @property
    def rows(self) -> tuple[CompareRow, ...]:
        """The runs' table: single, sequential, parallel, cached (those present)."""
        return tuple(
            CompareRow(
                run=name,
                wall_s=r.execution_time_s,
                critical_path_s=r.critical_path_s,
                confidence=r.confidence,
                tier=r.tier,
                agents=f"{r.agents_participated}/{r.agents_total}",
                cache_hit=r.cache.hit,
            )
            for name, r in self.runs.items()
            if name in COMPARE_RUNS
        )

    @property
    def ideal_speedup(self) -> float | None:
        """Sequential wall ÷ the parallel run with a server slot for every agent."""
        seq, par = self.runs.get("sequential"), self.runs.get("parallel")
        if seq is None or par is None or unlimited_slots_s(par) <= 0:
            return None
        return seq.execution_time_s / unlimited_slots_s(par)

    @property
    def serialisation(self) -> Serialisation:
        par = self.runs.get("parallel")
        if par is None:
            return Serialisation(0.0, 0.0, 0.0, serialised=False)
        return serialisation(par)

    @property
    def variants(self) -> dict[str, AnalysisResult]:
        """The consolidation variants present, in table order."""
        return {v.key: self.runs[v.key] for v in CONSOLIDATION_VARIANTS if v.key in self.runs}

    @property
    def consolidation_rows(self) -> tuple[ConsolidationRow, ...]:
        labels = {v.key: v.label for v in CONSOLIDATION_VARIANTS}
        return tuple(_consolidation_row(key, labels[key], r) for key, r in self.variants.items())


def _consolidation_row(key: str, label: str, r: AnalysisResult) -> ConsolidationRow:
    cons = r.consolidation
    warm = [n for n in (evaluated_tokens(w, r.backend.kind) for w in r.warmups) if n is not None]
    return ConsolidationRow(
        key=key,
        label=label,
        wall_s=r.execution_time_s,
        after_last_agent_s=after_last_agent_s(r),
        evaluated_tokens=evaluated_tokens(cons, r.backend.kind) if cons else None,
        cached_tokens=cons.cached_tokens if cons else None,
        warmups=len(r.warmups),
        warmup_evaluated_tokens=sum(warm) if warm else None,
        method=cons.method if cons else None,
        tier=r.tier,
    )
