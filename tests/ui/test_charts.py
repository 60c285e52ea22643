"""ui.charts: the waterfall's rows, segments, markers and the shared time axis."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest

from engine.records import AnalysisResult, CacheInfo, Mode
from engine.report.compare import Comparison
from engine.report.timeline import CONSOLIDATION_LABEL
from tests.support.results import agent, make_result
from ui import charts


def segment_traces(fig: Any, yaxis: str | None = None) -> list[Any]:
    return [
        t
        for t in fig.data
        if isinstance(t.meta, dict)
        and "segment" in t.meta
        and (yaxis is None or (t.yaxis or "y") == yaxis)
    ]


def widths_by_row(fig: Any, yaxis: str | None = None) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for trace in segment_traces(fig, yaxis):
        for y, x in zip(trace.y, trace.x, strict=True):
            totals[y] += x
    return dict(totals)


def starts_by_row(fig: Any) -> dict[str, float]:
    starts: dict[str, float] = {}
    for trace in segment_traces(fig):
        for y, base in zip(trace.y, trace.base, strict=True):
            starts[y] = min(starts.get(y, base), base)
    return starts


def bar_styles(fig: Any, label: str) -> list[tuple[float, str, str]]:
    """(outline width, outline colour, pattern) of every segment of one row."""
    out = []
    for trace in segment_traces(fig):
        for i, y in enumerate(trace.y):
            if y == label:
                line = trace.marker.line
                out.append((line.width[i], line.color[i], trace.marker.pattern.shape[i]))
    return out


def dashed_vlines(fig: Any) -> list[Any]:
    return [s for s in fig.layout.shapes if s.type == "line" and s.line.dash == "dash"]


def test_one_row_per_agent_plus_consolidation() -> None:
    result = make_result()
    fig = charts.waterfall(result)
    rows = set(widths_by_row(fig))
    assert rows == {"A", "B", "C", "D", "E", CONSOLIDATION_LABEL}
    assert list(fig.layout.yaxis.categoryarray) == ["A", "B", "C", "D", "E", CONSOLIDATION_LABEL]
    assert fig.layout.yaxis.autorange == "reversed"  # first agent on top


def test_segment_widths_sum_to_each_duration_and_start_at_start() -> None:
    result = make_result()
    fig = charts.waterfall(result)
    widths = widths_by_row(fig)
    starts = starts_by_row(fig)
    for run in result.agents:
        assert widths[run.name] == pytest.approx(run.duration_s)
        assert starts[run.name] == pytest.approx(run.start_s)
    assert result.consolidation is not None
    assert widths[CONSOLIDATION_LABEL] == pytest.approx(result.consolidation.duration_s)
    assert starts[CONSOLIDATION_LABEL] == pytest.approx(result.consolidation.start_s)


def test_bars_are_horizontal_on_a_linear_seconds_axis() -> None:
    fig = charts.waterfall(make_result())
    assert all(t.type == "bar" and t.orientation == "h" for t in segment_traces(fig))
    assert fig.layout.xaxis.type == "linear"
    assert fig.layout.barmode == "overlay"  # segments of one row share its lane
    assert fig.layout.xaxis.range[1] >= make_result().execution_time_s


def test_segments_are_split_by_kind_and_unreported_timing_is_one_segment() -> None:
    fig = charts.waterfall(make_result())
    kinds = {t.meta["segment"]: list(t.y) for t in segment_traces(fig)}
    assert "A" in kinds["queue"] and "A" in kinds["decode"]
    # C (timeout), D (cancelled) and E reported no breakdown: one `total` bar each.
    assert sorted(kinds["total"]) == ["C", "D", "E"]


def test_quorum_marker_is_a_dashed_vertical_line() -> None:
    fig = charts.waterfall(make_result(quorum_s=2.5))
    (line,) = dashed_vlines(fig)
    assert line.x0 == line.x1 == 2.5
    assert any("quorum" in (a.text or "") for a in fig.layout.annotations)


def test_no_quorum_marker_when_quorum_was_not_reached() -> None:
    assert dashed_vlines(charts.waterfall(make_result(quorum_s=None))) == []


def test_critical_path_is_outlined_and_in_the_legend() -> None:
    fig = charts.waterfall(make_result())
    legend = [t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("critical_path")]
    assert len(legend) == 1 and legend[0].name == charts.CRITICAL_LEGEND
    assert all(w == charts.CRITICAL_WIDTH for w, _, _ in bar_styles(fig, "B"))
    assert all(w == charts.CRITICAL_WIDTH for w, _, _ in bar_styles(fig, CONSOLIDATION_LABEL))
    assert all(w < charts.CRITICAL_WIDTH for w, _, _ in bar_styles(fig, "A"))


def test_timeout_and_cancelled_look_different_from_ok_and_each_other() -> None:
    fig = charts.waterfall(make_result())
    (ok,) = {(c, p) for _, c, p in bar_styles(fig, "E")}
    (timeout,) = {(c, p) for _, c, p in bar_styles(fig, "C")}
    (cancelled,) = {(c, p) for _, c, p in bar_styles(fig, "D")}
    assert ok[1] == ""  # solid
    assert timeout[1] and cancelled[1]  # both hatched…
    assert timeout != cancelled  # …differently, with different outlines
    assert timeout[0] != cancelled[0]
    labels = [t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("status_labels")]
    assert sorted(s.strip() for s in labels[0].text) == ["cancelled", "timeout"]


def test_hover_carries_milliseconds_and_tokens() -> None:
    fig = charts.waterfall(make_result())
    decode = next(t for t in segment_traces(fig) if t.meta["segment"] == "decode")
    i = list(decode.y).index("A")
    data = decode.customdata[i]
    assert data[0] == "A"
    assert data[3] == "2,000"  # A's whole bar: 2 s in ms
    assert data[7] == "100"  # output tokens
    assert "customdata[7]" in decode.hovertemplate and " ms" in decode.hovertemplate


def test_agent_names_are_escaped_for_plotly() -> None:
    runs = [agent("<b>Evil</b>", 0.0, 1.0), agent("B", 0.0, 1.0)]
    fig = charts.waterfall(make_result(agents=runs))
    assert "&lt;b&gt;Evil&lt;/b&gt;" in widths_by_row(fig)
    assert not any("<b>Evil" in y for y in widths_by_row(fig))


def test_stacked_waterfalls_share_one_time_axis() -> None:
    seq = make_result(mode="sequential", wall=14.0, quorum_s=None)
    par = make_result(wall=4.0, quorum_s=2.5)
    fig = charts.stacked_waterfalls(seq, par)
    # make_subplots(shared_xaxes=True): the top axis follows the bottom one.
    assert fig.layout.xaxis.matches == "x2"
    assert fig.layout.xaxis2.type == "linear"
    assert set(widths_by_row(fig, "y")) == set(widths_by_row(fig, "y2"))
    assert widths_by_row(fig, "y2")["B"] == pytest.approx(3.0)
    (line,) = dashed_vlines(fig)
    assert line.x0 == 2.5 and line.xref == "x2"  # the quorum marker sits in the parallel plot
    names = [t.name for t in fig.data if t.showlegend]
    assert len(names) == len(set(names))  # one legend for both


def test_compare_bars_show_wall_time_per_run() -> None:
    runs: tuple[tuple[str, Mode, float], ...] = (
        ("single", "single", 5.0),
        ("sequential", "sequential", 12.0),
        ("parallel", "parallel", 4.0),
        ("cached", "parallel", 0.002),
    )
    data: dict[str, Any] = {
        name: make_result(mode=mode, wall=wall).to_dict() for name, mode, wall in runs
    }
    data["speedup"] = 3.0
    fig = charts.compare_bars(Comparison.from_dict(data).rows)
    wall = fig.data[0]
    assert list(wall.x) == ["single", "sequential", "parallel", "cached"]
    assert list(wall.y) == [5.0, 12.0, 4.0, 0.002]


def test_history_trend_draws_a_line_per_mode_and_time_scale_and_hits_apart() -> None:
    fresh = replace(make_result(wall=4.0), simulated_time_scale=0.1)
    cached: AnalysisResult = replace(
        make_result(wall=0.01), cache=CacheInfo(hit=True, age_s=3.0), created_at=1_700_000_060.0
    )
    other = replace(
        make_result(wall=6.0), tier="excellent", created_at=1_700_000_120.0,
        simulated_time_scale=0.1,
    )  # fmt: skip
    real_speed = replace(
        make_result(wall=60.0), simulated_time_scale=1.0, created_at=1_700_000_180.0
    )
    seq = replace(make_result(mode="sequential", wall=9.0), simulated_time_scale=0.1)
    fig = charts.history_trend([other, cached, fresh, real_speed, seq])
    lines = {t.name: t for t in fig.data}
    assert set(lines) == {
        "parallel · simulated × 0.1",
        "parallel · simulated × 1",
        "sequential · simulated × 0.1",
        "cache hit (lookup)",
    }
    assert list(lines["parallel · simulated × 0.1"].y) == [4.0, 6.0]  # oldest first, no hit
    assert list(lines["cache hit (lookup)"].y) == [0.01]
    assert lines["cache hit (lookup)"].mode == "markers"  # never joined to a line


def test_legend_keys_are_plain_colours_not_a_bar_s_outline() -> None:
    fig = charts.waterfall(make_result())
    assert not any(t.showlegend for t in segment_traces(fig))
    keys = [t for t in fig.data if isinstance(t.meta, dict) and "segment_key" in t.meta]
    assert {t.meta["segment_key"] for t in keys} == {t.meta["segment"] for t in segment_traces(fig)}
    assert all(t.marker.line.width == 0 and t.showlegend for t in keys)


def test_the_legend_has_a_band_of_its_own_above_a_one_row_waterfall() -> None:
    single = make_result(mode="single", agents=[agent("Generalist", 0.0, 1.0)])
    single = replace(single, consolidation=None)
    fig = charts.waterfall(single)
    rows = charts.legend_rows(fig)
    assert rows >= 1
    # the legend is anchored to the top of the figure, inside a top margin sized for it,
    # so the plot area (where the bar is) starts below it
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 1.0
    assert fig.layout.margin.t >= 30 + charts.LEGEND_ROW_PX * rows


def test_simulated_times_are_drawn_in_projected_seconds() -> None:
    result = make_result()
    assert result.consolidation is not None
    fig = charts.waterfall(result, scale=0.1)
    bars = [t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("segment")]
    widest = max(b + x for t in bars for b, x in zip(t.base, t.x, strict=True))
    assert widest == pytest.approx(
        10 * max(r.end_s for r in [*result.agents, result.consolidation])
    )
    assert fig.layout.xaxis.title.text == "seconds at real speed (projected; simulator at 0.1×)"


def test_compare_bars_legend_colours_are_the_bars_colours() -> None:
    rows = Comparison.from_dict({"sequential": make_result(mode="sequential").to_dict(),
                       "parallel": make_result().to_dict()}).rows  # fmt: skip
    fig = charts.compare_bars(rows)
    for trace in fig.data:
        assert isinstance(trace.marker.color, str), f"{trace.name}: one colour, as its legend key"
