"""Plotly figures: the timing waterfall, the comparison bars and the history trend.

The waterfall is horizontal bars on a linear seconds axis (`go.Bar(base=start, x=width)`),
not `px.timeline`: that one wants datetimes, and a run is a few seconds from zero. Every
label and hover string that can carry text from outside the code goes through
`ui.safe.plotly`, because plotly renders a subset of HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.records import AgentRun, AnalysisResult
from engine.report.compare import CompareRow
from engine.report.timeline import (
    CONSOLIDATION_LABEL,
    SEGMENT_KINDS,
    SEGMENT_LABELS,
    Row,
    SegmentKind,
    Timeline,
    timeline,
)
from ui import safe

SEGMENT_COLOURS: dict[str, str] = {
    "wait": "#e2e8f0",
    "queue": "#cbd5e1",
    "load": "#a78bfa",
    "prefill": "#f59e0b",
    "decode": "#3b82f6",
    "other": "#94a3b8",
    "total": "#14b8a6",
}
TIER_COLOURS: dict[str, str] = {
    "excellent": "#16a34a",
    "good": "#2563eb",
    "basic": "#d97706",
    "single": "#7c3aed",
    "fallback": "#dc2626",
}


@dataclass(frozen=True)
class StatusStyle:
    border: str
    pattern: str  # plotly bar pattern shape; "" is solid
    label: str


STATUS_STYLES: dict[str, StatusStyle] = {
    "ok": StatusStyle("rgba(255,255,255,0.9)", "", "ok"),
    "timeout": StatusStyle("#ea580c", "x", "timeout (hatched ×, orange outline)"),
    "error": StatusStyle("#dc2626", "-", "error (striped, red outline)"),
    "cancelled": StatusStyle("#6b7280", "/", "cancelled (hatched /, grey outline)"),
}
CRITICAL_BORDER = "#111827"
CRITICAL_WIDTH = 3.5
NORMAL_WIDTH = 1.0
QUORUM_COLOUR = "#16a34a"
WALL_COLOUR = "#2563eb"
RunT = TypeVar("RunT", bound=AgentRun)
CRITICAL_LEGEND = "critical path (thick outline)"

_HOVER = (
    "<b>%{customdata[0]}</b> · %{customdata[1]}<br>"
    "%{customdata[2]} ms of this segment · %{customdata[3]} ms in all<br>"
    "starts at %{customdata[4]} ms · status %{customdata[5]}<br>"
    "tokens: %{customdata[6]} prompt / %{customdata[7]} output · TTFT %{customdata[8]}"
    "%{customdata[10]}"
    "%{customdata[9]}<extra></extra>"
)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _cached(row: Row) -> str:
    """The prefill the server's prefix cache saved, when it says."""
    if not row.cached_tokens:
        return ""
    return f"<br>{row.cached_tokens:,} prompt tokens reused from the server's prefix cache"


def row_label(row: Row) -> str:
    """The y-axis label: the agent's name; the consolidation says how it was done."""
    if row.consolidation:
        how = " (merge)" if row.method == "fallback" else ""
        return CONSOLIDATION_LABEL + how
    return safe.plotly(row.label, limit=60) + (" (late)" if row.late else "")


def _border(row: Row) -> tuple[str, float]:
    style = STATUS_STYLES.get(row.status, STATUS_STYLES["error"])
    if row.critical:
        # A critical agent that failed keeps its status colour; thickness says "critical".
        return (CRITICAL_BORDER if row.status == "ok" else style.border), CRITICAL_WIDTH
    return style.border, (NORMAL_WIDTH if row.status == "ok" else 2.0)


def _target(row: int | None, col: int | None) -> dict[str, int]:
    return {} if row is None or col is None else {"row": row, "col": col}


def add_waterfall(
    fig: Any,
    result: AnalysisResult,
    *,
    row: int | None = None,
    col: int | None = None,
    legend_seen: set[str] | None = None,
) -> Timeline:
    """Draw `result`'s waterfall into `fig` (or one subplot of it); returns its timeline.

    `legend_seen` lets several waterfalls share one legend without repeating entries.
    """
    seen = legend_seen if legend_seen is not None else set()
    tl = timeline(result)
    labels = [row_label(r) for r in tl.rows]
    where = _target(row, col)

    for kind in SEGMENT_KINDS:
        bars = _segment_bars(tl, labels, kind)
        if not bars.xs:
            continue
        _add_segment_trace(fig, kind, bars, where)
        name = SEGMENT_LABELS[kind]
        if name not in seen:
            seen.add(name)
            marker = {"color": SEGMENT_COLOURS[kind], "line": {"width": 0}}
            _legend_key(fig, name, marker, {"segment_key": kind}, where, group=kind)

    _add_status_labels(fig, tl, labels, where)
    _add_legend_keys(fig, tl, seen, where)
    if tl.quorum_reached_s is not None:
        _add_quorum_line(fig, tl.quorum_reached_s, where)
    axis = {"autorange": "reversed", "categoryorder": "array", "categoryarray": labels}
    fig.update_yaxes(**axis, **where)
    return tl


@dataclass
class _SegmentBars:
    """One segment kind's bars across a waterfall's rows (one plotly trace)."""

    xs: list[float] = field(default_factory=list)
    bases: list[float] = field(default_factory=list)
    ys: list[str] = field(default_factory=list)
    data: list[list[str]] = field(default_factory=list)
    borders: list[str] = field(default_factory=list)
    widths: list[float] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    pattern_colours: list[str] = field(default_factory=list)


def _segment_bars(tl: Timeline, labels: list[str], kind: SegmentKind) -> _SegmentBars:
    bars = _SegmentBars()
    for r, label in zip(tl.rows, labels, strict=True):
        for seg in r.segments:
            if seg.kind != kind:
                continue
            bars.xs.append(seg.duration_s)
            bars.bases.append(seg.start_s)
            bars.ys.append(label)
            border, width = _border(r)
            bars.borders.append(border)
            bars.widths.append(width)
            style = STATUS_STYLES.get(r.status, STATUS_STYLES["error"])
            bars.patterns.append(style.pattern)
            bars.pattern_colours.append(style.border if style.pattern else SEGMENT_COLOURS[kind])
            error = f"<br>error: {safe.plotly(r.error, limit=160)}" if r.error else ""
            bars.data.append(
                [
                    label,
                    SEGMENT_LABELS[kind],
                    _ms(seg.duration_s),
                    _ms(r.duration_s),
                    _ms(seg.start_s),
                    r.status,
                    _tokens(r.prompt_tokens),
                    _tokens(r.output_tokens),
                    "-" if r.ttft_s is None else f"{_ms(r.ttft_s)} ms",
                    error,
                    _cached(r),
                ]
            )
    return bars


def _add_segment_trace(
    fig: Any, kind: SegmentKind, bars: _SegmentBars, where: dict[str, int]
) -> None:
    fig.add_trace(
        go.Bar(
            orientation="h",
            x=bars.xs,
            base=bars.bases,
            y=bars.ys,
            name=SEGMENT_LABELS[kind],
            legendgroup=kind,
            # Plotly draws a legend key in the style of a trace's first bar, which may
            # carry a status or critical-path outline; a plain key is added by the caller.
            showlegend=False,
            customdata=bars.data,
            hovertemplate=_HOVER,
            marker={
                "color": SEGMENT_COLOURS[kind],
                "line": {"color": bars.borders, "width": bars.widths},
                "pattern": {
                    "shape": bars.patterns,
                    "fgcolor": bars.pattern_colours,
                    "solidity": 0.35,
                },
            },
            meta={"segment": kind},
        ),
        **where,
    )


def _add_quorum_line(fig: Any, quorum_s: float, where: dict[str, int]) -> None:
    fig.add_vline(
        x=quorum_s,
        line_dash="dash",
        line_color=QUORUM_COLOUR,
        line_width=2,
        annotation_text=f"quorum at {quorum_s:.2f} s",
        # Bottom left: the legend sits above the plot, and the consolidation bar
        # (bottom row) starts at or after the quorum, so this corner is free.
        annotation_position="bottom left",
        annotation_font_color=QUORUM_COLOUR,
        **where,
    )


def _add_status_labels(fig: Any, tl: Timeline, labels: list[str], where: dict[str, int]) -> None:
    """Text after every bar that did not end `ok`: colour is not the only signal."""
    points = [
        (r.end_s, label, r.status)
        for r, label in zip(tl.rows, labels, strict=True)
        if r.status != "ok"
    ]
    if not points:
        return
    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            text=[f" {p[2]}" for p in points],
            mode="text",
            textposition="middle right",
            textfont={"color": [STATUS_STYLES[p[2]].border for p in points]},
            hoverinfo="skip",
            showlegend=False,
            meta={"status_labels": True},
        ),
        **where,
    )


def _add_legend_keys(fig: Any, tl: Timeline, seen: set[str], where: dict[str, int]) -> None:
    """Legend-only entries (no data) for the outline styles used in this waterfall."""
    keys: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    if any(r.critical for r in tl.rows):
        keys.append(
            (CRITICAL_LEGEND, {"critical_path": True}, {"color": CRITICAL_BORDER, "width": 3})
        )
    for status in ("timeout", "error", "cancelled"):
        if any(r.status == status for r in tl.rows):
            style = STATUS_STYLES[status]
            keys.append((style.label, {"status": status}, {"color": style.border, "width": 2}))
    for name, meta, line in keys:
        if name in seen:
            continue
        seen.add(name)
        pattern = STATUS_STYLES.get(meta.get("status", "ok"), STATUS_STYLES["ok"]).pattern
        marker = {
            "color": "rgba(0,0,0,0)",
            "line": line,
            "pattern": {"shape": pattern, "fgcolor": line["color"]},
        }
        _legend_key(fig, name, marker, meta, where)


def _legend_key(
    fig: Any,
    name: str,
    marker: dict[str, Any],
    meta: dict[str, Any],
    where: dict[str, Any],
    group: str | None = None,
) -> None:
    """A legend entry with no data: plotly has no other way to show a style's key."""
    fig.add_trace(
        go.Bar(
            orientation="h",
            x=[None],
            y=[None],
            name=name,
            legendgroup=group,
            marker=marker,
            showlegend=True,
            hoverinfo="skip",
            meta={"legend_only": True, **meta},
        ),
        **where,
    )


# The legend gets a band of its own above the plot, sized to its entries, so it never
# covers a bar (a one-row waterfall had its only bar under a two-line legend).
LEGEND_ROW_PX = 24
LEGEND_ROW_CHARS = 90  # characters of legend labels that fit one row at ~700 px


def legend_rows(fig: Any) -> int:
    """Rows a horizontal legend of `fig`'s entries needs (an estimate from label length)."""
    names = [str(t.name) for t in fig.data if t.showlegend]
    if not names:
        return 0
    chars = sum(len(n) + 6 for n in names)  # + the key swatch and the gap
    return max(1, -(-chars // LEGEND_ROW_CHARS))


def _layout(fig: Any, *, height: int, span_s: float, title: str | None) -> None:
    band = LEGEND_ROW_PX * legend_rows(fig)
    top = (60 if title else 30) + band
    fig.update_layout(
        barmode="overlay",
        bargap=0.3,
        height=height + band,
        margin={"l": 10, "r": 20, "t": top, "b": 40, "autoexpand": True},
        title={"text": safe.plotly(title)} if title else None,
        # In the container's coordinates: the band at the top, whatever the plot's height.
        legend={"orientation": "h", "yref": "container", "yanchor": "top", "y": 1.0, "x": 0},
        hoverlabel={"align": "left"},
    )
    fig.update_xaxes(
        type="linear",
        range=[0, max(span_s, 0.001) * 1.12],  # room for the status labels after the bars
        ticksuffix=" s",
        zeroline=True,
        showgrid=True,
    )


def _scaled(run: RunT, factor: float) -> RunT:
    timed = ("start_s", "end_s", "duration_s", "ttft_s", "queue_s", "load_s", "prefill_s",
             "decode_s", "client_queue_s")  # fmt: skip
    changes = {
        name: getattr(run, name) * factor for name in timed if getattr(run, name) is not None
    }
    return replace(run, **changes)


def projected_result(result: AnalysisResult, scale: float | None) -> AnalysisResult:
    """`result` with every time ÷ the simulator's time scale, for axes in real seconds
    (unchanged when the times are real: scale None)."""
    if scale is None:
        return result
    k = 1 / scale
    cons = result.consolidation
    return replace(
        result,
        execution_time_s=result.execution_time_s * k,
        critical_path_s=result.critical_path_s * k,
        quorum_reached_s=None if result.quorum_reached_s is None else result.quorum_reached_s * k,
        agents=[_scaled(a, k) for a in result.agents],
        warmups=[_scaled(w, k) for w in result.warmups],
        consolidation=None if cons is None else _scaled(cons, k),
    )


def axis_title(scale: float | None) -> str:
    if scale is None:
        return "seconds since the run started"
    return f"seconds at real speed (projected; simulator at {scale:g}×)"


def waterfall(
    result: AnalysisResult, *, title: str | None = None, scale: float | None = None
) -> Any:
    """One run: a row per agent plus the consolidation, on a linear seconds axis (real
    seconds, projected, when `scale` is the simulator's time scale)."""
    fig = go.Figure()
    tl = add_waterfall(fig, projected_result(result, scale))
    _layout(fig, height=120 + 40 * len(tl.rows), span_s=tl.span_s, title=title)
    fig.update_xaxes(title_text=axis_title(scale))
    return fig


def stacked_waterfalls(
    top: AnalysisResult,
    bottom: AnalysisResult,
    *,
    titles: tuple[str, str] = ("Sequential", "Parallel"),
    scale: float | None = None,
    span_s: float | None = None,
    row_px: int = 30,
) -> Any:
    """Two runs one above the other on one shared time axis, so their lengths compare.
    `span_s` fixes the axis (in the axis' seconds), e.g. while the runs are still drawing."""
    top, bottom = projected_result(top, scale), projected_result(bottom, scale)
    rows_top = len(timeline(top).rows) or 1
    rows_bottom = len(timeline(bottom).rows) or 1
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        row_heights=[rows_top, rows_bottom],
        subplot_titles=[safe.plotly(t) for t in titles],
    )
    seen: set[str] = set()
    tl_top = add_waterfall(fig, top, row=1, col=1, legend_seen=seen)
    tl_bottom = add_waterfall(fig, bottom, row=2, col=1, legend_seen=seen)
    span = span_s if span_s is not None else max(tl_top.span_s, tl_bottom.span_s)
    _layout(fig, height=130 + row_px * (rows_top + rows_bottom), span_s=span, title=None)
    fig.update_xaxes(title_text=axis_title(scale), row=2, col=1)
    return fig


def compare_bars(rows: Sequence[CompareRow]) -> Any:
    """Wall time against critical path for each run of a comparison, coloured by tier."""
    names = [r.run for r in rows]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=names,
            y=[r.wall_s for r in rows],
            name="wall time",
            # One colour per legend entry: the tier is written on the bar, not coloured.
            marker={"color": WALL_COLOUR},
            text=[f"{r.wall_s:.2f} s · {r.tier}" for r in rows],
            textposition="outside",
            textfont={"size": 12},
            cliponaxis=False,
            customdata=[[r.tier, r.confidence, r.agents] for r in rows],
            hovertemplate=(
                "%{x}: %{y:.3f} s wall<br>tier %{customdata[0]} %{customdata[1]}"
                " · %{customdata[2]} agents<extra></extra>"
            ),
        )
    )
    fig.add_trace(
        go.Bar(
            x=names,
            y=[r.critical_path_s for r in rows],
            name="critical path",
            marker={"color": "rgba(100,116,139,0.45)"},
            hovertemplate="%{x}: %{y:.3f} s critical path<extra></extra>",
        )
    )
    fig.update_layout(
        barmode="group",
        height=360,
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        yaxis={"title": {"text": "seconds"}, "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.08},
    )
    return fig


def trend_series(result: AnalysisResult) -> str:
    """The line a run belongs to: its mode and what its seconds are (a real server's, or
    the simulator's at one time scale). Runs at different scales are not comparable."""
    if not result.backend.simulated:
        return f"{result.mode} · real server"
    scale = result.simulated_time_scale
    return f"{result.mode} · simulated × {'—' if scale is None else f'{scale:g}'}"


def history_trend(results: Sequence[AnalysisResult]) -> Any:
    """Wall time of every fresh run over time, one line per mode and time scale; cache
    hits are open diamonds on their own (a lookup, not a run)."""
    ordered = sorted(results, key=lambda r: r.created_at)
    fig = go.Figure()
    series: dict[str, list[AnalysisResult]] = {}
    for r in ordered:
        if not r.cache.hit:
            series.setdefault(trend_series(r), []).append(r)
    for name, points in series.items():
        fig.add_trace(
            go.Scatter(
                x=[datetime.fromtimestamp(r.created_at) for r in points],
                y=[r.execution_time_s for r in points],
                mode="lines+markers",
                name=safe.plotly(name),
                # One colour per series, line and markers alike, as its legend key shows.
                marker={"size": 8},
                customdata=[[r.tier, r.host or "—"] for r in points],
                hovertemplate=(
                    "%{x|%H:%M:%S}: %{y:.3f} s<br>tier %{customdata[0]} · host "
                    "%{customdata[1]}<extra>" + safe.plotly(name) + "</extra>"
                ),
                meta={"series": name},
            )
        )
    hits = [r for r in ordered if r.cache.hit]
    if hits:
        fig.add_trace(
            go.Scatter(
                x=[datetime.fromtimestamp(r.created_at) for r in hits],
                y=[r.execution_time_s for r in hits],
                mode="markers",
                name="cache hit (lookup)",
                marker={"symbol": "diamond-open", "size": 9, "color": "#64748b"},
                hovertemplate="%{x|%H:%M:%S}: %{y:.3f} s cache hit<extra></extra>",
                meta={"series": "cache hits"},
            )
        )
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 30 + LEGEND_ROW_PX * legend_rows(fig), "b": 30},
        yaxis={"title": {"text": "wall time (s)"}, "rangemode": "tozero", "type": "linear"},
        legend={"orientation": "h", "yref": "container", "yanchor": "top", "y": 1.0, "x": 0},
        showlegend=True,  # even for one series: its name says what the line is
    )
    return fig


RACE_COLOURS: dict[str, str] = {
    "waiting": SEGMENT_COLOURS["wait"],
    "running": "#93c5fd",
    "answered": SEGMENT_COLOURS["decode"],
    "failed": STATUS_STYLES["error"].border,
}
RACE_LABELS: dict[str, str] = {
    "waiting": "waiting in Quorum for a free server slot",
    "running": "running (answer streaming)",
    "answered": "answered",
    "failed": "failed, timed out or cancelled",
}


def race(
    bars: Mapping[str, Sequence[Any]],
    *,
    span_s: float,
    scale: float | None,
    rows: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """The comparison while it runs: each run's calls so far (`ui.compare_live.Bar`:
    run, label, start_s, end_s, state), one subplot per run on one fixed time axis;
    `rows` lists each run's calls before they have a bar."""
    runs = list(bars)
    labels = {
        run: list(dict.fromkeys([*(rows or {}).get(run, ()), *(b.label for b in bars[run])]))
        for run in runs
    }
    fig = make_subplots(
        rows=len(runs),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.14,
        row_heights=[max(1, len(labels[r])) for r in runs],
        subplot_titles=[safe.plotly(r.capitalize()) for r in runs],
    )
    for i, run in enumerate(runs, start=1):
        for state, colour in RACE_COLOURS.items():
            chosen = [b for b in bars[run] if b.state == state]
            fig.add_trace(
                go.Bar(
                    orientation="h",
                    x=[b.end_s - b.start_s for b in chosen],
                    base=[b.start_s for b in chosen],
                    y=[safe.plotly(b.label, limit=60) for b in chosen],
                    name=RACE_LABELS[state],
                    legendgroup=state,
                    showlegend=i == 1,
                    marker={"color": colour, "line": {"width": 0}},
                    customdata=[[b.end_s] for b in chosen],
                    hovertemplate="%{y}: %{base:.1f}–%{customdata[0]:.1f} s<extra></extra>",
                    meta={"race_run": run, "state": state},
                ),
                row=i,
                col=1,
            )
        order = [safe.plotly(label, limit=60) for label in labels[run]]
        # Categories with a fixed range: every row shows before its bar exists.
        fig.update_yaxes(
            type="category", categoryorder="array", categoryarray=order,
            range=[len(order) - 0.5, -0.5], row=i, col=1,
        )  # fmt: skip
    count = sum(max(1, len(v)) for v in labels.values())
    _layout(fig, height=150 + 24 * count, span_s=span_s, title=None)
    fig.update_xaxes(title_text=axis_title(scale), row=len(runs), col=1)
    return fig
