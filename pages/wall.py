"""`?view=wall`: Live for a screen on an ops-room wall (1920×1080, read from across the
room). The tier, the verdict, the top three insights and the age of the analysis, then
large USE tiles coloured by severity; it refreshes by itself. Every text is a Markdown
heading (≥ 20 px), never a caption or a badge."""

from __future__ import annotations

import streamlit as st

from engine.records import AnalysisResult
from engine.run import use_method
from engine.sources.snapshot import FIELDS, Snapshot, SnapshotError
from ui import context as ui_context
from ui import live_session, render, resources, safe, sources

SEVERITY_TEXT: dict[str, str] = {
    "CRITICAL": "red",
    "HIGH": "orange",
    "MEDIUM": "orange",
    "LOW": "blue",
}
TIER_TEXT: dict[str, str] = {
    "excellent": "green",
    "good": "blue",
    "basic": "orange",
    "single": "violet",
    "fallback": "red",
}

ctx = ui_context.context()
raw = st.query_params.get("refresh", "30")
chosen = int(raw) if raw.isdigit() and int(raw) > 0 else 30
interval, stretched = live_session.refresh_interval(chosen, live_session.last_run_s())


def headline(result: AnalysisResult, host: str) -> None:
    tier = TIER_TEXT.get(result.tier, "gray")
    age = render.age_text(render.result_age_s(result))
    simulated = " · simulated" if result.backend.simulated else ""
    st.markdown(
        f"## {safe.md(host)} · :{tier}[{result.tier} {result.confidence}] · "
        f"{result.agents_participated}/{result.agents_total} agents · analysed {age}{simulated}"
    )
    st.markdown(f"### {safe.md(render.verdict_text(result), limit=200)}")
    issues = [i for i in result.insights if not use_method.is_all_clear(i)]
    for insight in issues[:3]:
        colour = SEVERITY_TEXT.get(insight.severity, "gray")
        st.markdown(f"#### :{colour}[**{insight.severity}**] {safe.md(insight.title, limit=120)}")


def tiles(snapshot: Snapshot) -> None:
    columns = st.columns(len(render.RESOURCES))
    for column, (resource, title) in zip(columns, render.RESOURCES, strict=True):
        with column.container(border=True):
            st.markdown(f"### {title}")
            for kind, letter in render.USE_KINDS:
                spec = next(f for f in FIELDS if f.resource == resource and f.kind == kind)
                value = snapshot.metric(spec.name)
                severity = use_method.metric_severity(spec.name, value)
                colour = SEVERITY_TEXT.get(severity or "", "green")
                shown = safe.md(render.format_value(spec, value))
                st.markdown(f"##### {letter} · {spec.label}")
                st.markdown(f"## :{colour}[{shown}]" + (f" {severity}" if severity else ""))


@st.fragment(run_every=interval)
def wall_panel() -> None:
    if ctx.backend is None:
        st.markdown(f"## {safe.md(ctx.backend_error or 'No backend: see the sidebar')}")
        return
    try:
        snapshot = ctx.source.read()
    except SnapshotError as exc:
        st.markdown(f"## No snapshot: {safe.md(sources.snapshot_error_message(exc))}")
        return
    engine = resources.engine_for(ctx)
    if engine is None:
        return
    try:
        result = engine.analyze(snapshot, ctx.settings)
    except (OSError, RuntimeError, ValueError) as exc:
        st.markdown(f"## The analysis could not run: {safe.md(safe.ui_words(exc))}")
        return
    live_session.note_run(result)
    headline(result, snapshot.host)
    tiles(snapshot)
    note = f"##### Refreshes every {interval} s · {safe.md(ctx.source.label)}"
    st.markdown(note + (" · stretched: the last analysis was long" if stretched else ""))


wall_panel()
