"""How figures are written in the report and the chart."""

from __future__ import annotations

from typing import Any


def number(v: float) -> str:
    if v == int(v) and abs(v) < 1e6:
        return f"{int(v)}"
    a = abs(v)
    if a < 1:
        return f"{v:.3f}"
    if a < 10:
        return f"{v:.2f}"
    if a < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit in ("×", "%"):
        return f"{number(v)}{unit}"
    return f"{number(v)} {unit}".rstrip()


def cell(check: dict[str, Any]) -> str:
    """'1.006× (1.004–1.009)', or just the value when there was one sample."""
    s, unit = check["stats"], check["unit"]
    judged = value(check["measured"], unit)
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"**{judged}**"
    spread = f"{number(s['min'])}–{number(s['max'])}"
    how = "" if check["judge"] == "median" else f", worst = {check['judge']}"
    return f"**{judged}** ({spread}{how})"


def met_cell(row: dict[str, Any]) -> str:
    if row.get("not_measured"):
        return "— not measured"
    return "✅ met" if row["met"] else "❌ **MISSED**"
