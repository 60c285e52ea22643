"""Live insights: the verdict first (status strip), then the snapshot's USE tiles, then
where the seconds went."""

from __future__ import annotations

import streamlit as st

from engine.records import AnalysisResult
from engine.sources.snapshot import SnapshotError
from ui import context as ui_context
from ui import live_session, render, resources, safe, sources
from ui import prometheus as prom_ui

ctx = ui_context.context()
st.title("Live insights")

if ctx.backend is None:
    st.warning(safe.md(ctx.backend_error or "Fix the backend settings in the sidebar."))
    st.stop()

controls = st.container(horizontal=True, vertical_alignment="bottom")
with controls:
    paused = st.toggle("Pause auto-refresh", value=False, key="live_paused")
    chosen = st.select_slider(
        "Refresh every",
        options=list(live_session.REFRESH_OPTIONS_S),
        value=30,
        format_func=lambda s: f"{s} s",
        key="live_interval",
        disabled=paused,
        bind="query-params",
    )
interval, stretched = live_session.refresh_interval(int(chosen), live_session.last_run_s())
st.caption(
    safe.md(f"Snapshot: {ctx.source.label}")
    + (" · auto-refresh paused" if paused else f" · re-read every {interval} s")
    + ". An unchanged snapshot is served from the cache."
)
if stretched and not paused:
    st.warning(safe.md(stretched), icon=":material/timer:")


@st.fragment(run_every=None if paused else interval)
def live_refresh() -> None:
    """The timer's own fragment, around the panel's, and it writes nothing itself.

    Streamlit discards what a fragment's run wrote but had not yet sent when the next run
    of that fragment starts (`AppSession._clear_queue`), and a tick that came during a
    long analysis starts the next run the moment this one returns: the status box's last
    word went with it (issue 18). A tick reruns this fragment; what the panel (a fragment
    of its own) wrote is kept and sent."""
    if not paused and live_session.must_rearm(int(chosen)):
        st.rerun(scope="app")  # the interval must be stretched: re-arm the timer first
    live_panel()


@st.fragment
def live_panel() -> None:
    strip = st.container()
    slot = st.empty()  # one status box: this run's replaces the run before's
    try:
        snapshot, reading = ctx.source.read_detailed()
    except SnapshotError as exc:
        st.error(sources.snapshot_error_message(exc), title="No snapshot to analyse")
        return
    previous = live_session.previous_snapshot(snapshot, ctx.source)
    engine = resources.engine_for(ctx)
    if engine is None:  # the context checked this already; keeps the type checker honest
        return
    refresh = st.session_state.pop("live_bypass", False)
    progress = render.LiveProgress(
        slot, previous=live_session.last_word(), **live_session.progress_steps(ctx, engine)
    )
    progress.show_previous()
    result: AnalysisResult | None = None
    try:
        result = engine.analyze(snapshot, ctx.settings, refresh=refresh, progress=progress)
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(safe.md(safe.ui_words(exc)), title="The analysis could not run")
    finally:
        try:
            progress.close(result)
        finally:  # also when a rerun raised from the last write: the next run redraws it
            live_session.remember_last_word(progress.last_word)
    if result is not None:
        with strip:
            render.status_strip(result, snapshot)
        live_session.note_run(result)
    render.metric_tiles(snapshot, previous)
    if reading is not None:  # Prometheus: last fetch, unknown fields, what changed
        prom_ui.reading_panel(reading, previous)
    st.button(
        "Run now (bypass cache)",
        key="live_run_now",
        icon=":material/refresh:",
        help="Analyse again even if the cache holds this snapshot's answer.",
        on_click=lambda: st.session_state.update(live_bypass=True),
    )
    resources.state_banner(engine)
    if result is not None:
        render.result_details(
            result,
            ttl_s=ctx.ttl_s,
            cache_off=not ctx.cache_enabled,
            snapshot=snapshot,
            key="live",
        )


live_refresh()
