"""What a row reports: figures over repeats, each against its target, as JSON.

A `Check` is one figure (min/median/max over repeats) with an optional target; the
median is judged unless the figure is about *every* sample (then the max or min is).
A `Row` collects its checks; it is met when every binding check is met. Non-binding
checks are goals or context (the plan's 15 s, say) that are reported met/missed but do
not decide the row.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Op = Literal["<=", ">=", "==", "~"]
Judge = Literal["median", "max", "min"]


@dataclass(frozen=True)
class Stats:
    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no samples")
        return cls(min(values), statistics.median(values), max(values), len(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed sample, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Target:
    op: Op
    value: float
    tolerance: float = 0.0  # for "~": met when |measured − value| ≤ tolerance

    def met(self, measured: float) -> bool:
        if self.op == "<=":
            return measured <= self.value
        if self.op == ">=":
            return measured >= self.value
        if self.op == "==":
            return measured == self.value
        return abs(measured - self.value) <= self.tolerance

    def text(self, unit: str = "") -> str:
        sign = {"<=": "≤", ">=": "≥", "==": "=", "~": "≈"}[self.op]
        value = f"{self.value:g}{unit_suffix(unit)}"
        if self.op == "~":
            return f"{sign} {value} (± {self.tolerance:g})"
        return f"{sign} {value}"


def unit_suffix(unit: str) -> str:
    return unit if unit in ("×", "%") else f" {unit}" if unit else ""


@dataclass
class Check:
    name: str
    stats: Stats
    unit: str
    target: Target | None = None
    judge: Judge = "median"
    binding: bool = True  # False: a goal or context, reported but not deciding the row
    note: str = ""

    @property
    def judged(self) -> float:
        return float(getattr(self.stats, self.judge))

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.judged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.judged,
            "judge": self.judge,
            "stats": asdict(self.stats),
            "unit": self.unit,
            "target": self.target.text(self.unit) if self.target else None,
            "met": self.met,
            "binding": self.binding and self.target is not None,
            "note": self.note,
        }


def check(
    name: str,
    values: Sequence[float],
    unit: str,
    target: Target | None = None,
    **kwargs: Any,
) -> Check:
    return Check(name, Stats.of(values), unit, target, **kwargs)


@dataclass
class Row:
    id: str
    what: str
    target: str
    setup: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_measured: str | None = None  # why there is no figure (D1 without a dashboard)
    elapsed_s: float = 0.0

    @property
    def binding(self) -> list[Check]:
        return [c for c in self.checks if c.binding and c.target is not None]

    @property
    def met(self) -> bool:
        return self.not_measured is None and all(c.met for c in self.binding)

    @property
    def measured(self) -> float | None:
        """The headline figure: the first binding check's judged value."""
        return self.binding[0].judged if self.binding else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "what": self.what,
            "target": self.target,
            "measured": self.measured,
            "unit": self.binding[0].unit if self.binding else None,
            "met": self.met,
            "missed": [c.name for c in self.binding if not c.met],
            "not_measured": self.not_measured,
            "setup": self.setup,
            "checks": [c.to_dict() for c in self.checks],
            "details": self.details,
            "notes": self.notes,
            "elapsed_s": round(self.elapsed_s, 2),
        }
