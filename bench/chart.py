"""docs/performance.svg: two horizontal bar charts, drawn by hand (no plotting library).

Top: one analysis projected to time scale 1 (P2), against the team's 70 s and the plan's
15 s goal. Bottom: ours ÷ the plan's wall per profile (P7), against 1.0 (parity).
"""

from __future__ import annotations

from html import escape
from typing import Any

from bench.format import number

WIDTH, LABEL_W, BAR_H, GAP, PAD = 980, 430, 18, 6, 20
PLOT_W = WIDTH - LABEL_W - 2 * PAD - 40
GREEN, RED, GREY, BLUE = "#2e7d32", "#c62828", "#757575", "#1565c0"

Bar = tuple[str, float, str]  # label, value, colour
Line = tuple[float, str]  # value, label


def _panel(
    y0: float, title: str, bars: list[Bar], lines: list[Line], unit: str
) -> tuple[list[str], float]:
    """SVG elements for one panel starting at y0, and the y where it ends."""
    top = max([v for _, v, _ in bars] + [v for v, _ in lines] + [1e-9]) * 1.08
    x0 = PAD + LABEL_W

    def x(v: float) -> float:
        return x0 + PLOT_W * v / top

    out = [f'<text x="{PAD}" y="{y0 + 16}" class="title">{escape(title)}</text>']
    y = y0 + 30
    end = y + len(bars) * (BAR_H + GAP)
    for v, label in lines:  # first, so the bars and their labels are drawn over them
        out += [
            f'<line x1="{x(v):.1f}" y1="{y0 + 24}" x2="{x(v):.1f}" y2="{end}" class="ref"/>',
            f'<text x="{x(v) + 3:.1f}" y="{end + 12}" class="small">{escape(label)}</text>',
        ]
    for label, v, colour in bars:
        out += [
            f'<text x="{x0 - 8}" y="{y + BAR_H - 5}" text-anchor="end">{escape(label)}</text>',
            f'<rect x="{x0}" y="{y}" width="{max(1.0, x(v) - x0):.1f}" height="{BAR_H}" '
            f'fill="{colour}"/>',
            f'<text x="{x(v) + 4:.1f}" y="{y + BAR_H - 5}" class="value">{number(v)}{unit}</text>',
        ]
        y += BAR_H + GAP
    return out, end + 24


def _find(row: dict[str, Any] | None, *parts: str) -> dict[str, Any] | None:
    for c in row["checks"] if row else []:
        if all(p in c["name"] for p in parts):
            return dict(c)
    return None


def _projection_bars(p2: dict[str, Any] | None) -> list[Bar]:
    bars: list[Bar] = []
    for c in p2["checks"] if p2 else []:
        if "projected" not in c["name"]:
            continue
        label = c["name"].replace(", projected to time scale 1", "")
        colour = GREY if "sequential" in label else GREEN if c["met"] else RED
        bars.append((label, float(c["measured"]), colour))
    return bars


def _plan_bars(p7: dict[str, Any] | None) -> list[Bar]:
    bars: list[Bar] = []
    for profile in (p7 or {}).get("setup", {}).get("profiles", []):
        for arm in ("quorum 3", "quorum 5"):
            c = _find(p7, f"{profile}: ours, {arm}", "÷ plan")
            if c is not None:
                colour = BLUE if c["met"] else RED
                bars.append((f"{profile}: ours ({arm}) ÷ plan", float(c["measured"]), colour))
    return bars


def render(results: dict[str, Any]) -> str:
    rows = {r["id"]: r for r in results["rows"]}
    p2, p7 = rows.get("P2"), rows.get("P7")
    body: list[str] = []
    y = 10.0
    if bars := _projection_bars(p2):
        scale = p2["setup"].get("time_scale") if p2 else None
        part, y = _panel(
            y,
            f"P2: one analysis, baseline profile, PROJECTED to time scale 1 "
            f"(measured at {scale} ÷ {scale}), median",
            bars,
            [(70.0, "team's 70 s"), (15.0, "plan's goal 15 s")],
            " s",
        )
        body += part
    if bars := _plan_bars(p7):
        scale = p7["setup"].get("time_scale") if p7 else None
        part, y = _panel(
            y,
            f"P7: Quorum's wall ÷ the plan's wall, same server work (time scale {scale}), median",
            bars,
            [(1.0, "parity")],
            "×",
        )
        body += part
    if not body:
        body.append(f'<text x="{PAD}" y="30">No P2 or P7 results to draw.</text>')
        y = 50
    style = (
        "text{font-family:sans-serif;font-size:12px;fill:#222}"
        ".title{font-size:14px;font-weight:bold}.small{font-size:10px;fill:#555}"
        ".ref{stroke:#333;stroke-dasharray:4 3}"
        ".value{paint-order:stroke;stroke:white;stroke-width:3px}"
    )
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y:.0f}" '
            f'viewBox="0 0 {WIDTH} {y:.0f}">',
            f"<style>{style}</style>",
            f'<rect width="{WIDTH}" height="{y:.0f}" fill="white"/>',
            *body,
            f'<text x="{PAD}" y="{y - 6:.0f}" class="small">{escape(results["command"])} · '
            f"{escape(results['started_at'])} · green: meets the 15 s goal, red: misses it "
            "(P2); blue: ours ≤ plan (P7)</text>",
            "</svg>",
            "",
        ]
    )
