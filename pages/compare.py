"""Compare: before → after on one screen. Before: the five specialists one after another
with the full consolidation (the sequential baseline of
../shared/plan/next-steps-multi-agent-optimization.md); after: the five in parallel with
the compact one; then the cached run and the consolidation variants.

While it runs, a step list and both waterfalls grow as the progress events arrive; above
the fold when it is done: the tiles, both waterfalls on one axis, and what bounded the
result. Details sit in tabs below."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.records import AnalysisResult
from engine.report.compare import Comparison, ConsolidationRow
from engine.report.timeline import (
    PROJECTED_LABEL,
    critical_agent,
    projected_s,
    projection_scale,
    slot_advice,
)
from engine.run.settings import CONSOLIDATION_VARIANTS
from engine.service import isolates_variants
from engine.sources.snapshot import SnapshotError
from ui import charts, compare_live, render, resources, safe, sources
from ui import context as ui_context

ctx = ui_context.context()
st.title("Compare")

if ctx.backend is None:
    st.warning(safe.md(ctx.backend_error or "Fix the backend settings in the sidebar."))
    st.stop()

backend = ctx.backend
setup = f"{backend.kind} · {ctx.source.label}" + (
    f" · {backend.sim.slots} slot(s) · time scale {backend.sim.time_scale:g}"
    if backend.simulated
    else f" · {backend.model}"
)
with st.container(horizontal=True, vertical_alignment="center"):
    run = st.button(
        "Run comparison", type="primary", key="compare_run", icon=":material/play_arrow:"
    )
    st.caption(
        "Before: sequential + full consolidation (the baseline). After: parallel + compact.",
        help=safe.md(f"{setup}. Server slots: the sidebar's."),
    )

if st.session_state.pop("compare_cancelled", False):
    st.warning("Comparison cancelled: nothing was kept from the unfinished runs.")


def run_comparison() -> None:
    engine = resources.engine_for(ctx, backend)
    if engine is None:
        return
    snapshot = ctx.source.read()
    # The scale is kept with the data: the sidebar may change before the next rerun.
    scale = projection_scale(backend.simulated, backend.sim.time_scale)
    roster = engine.roster
    race = compare_live.CompareRace(
        agents=[s.name for s in roster.specialists],
        generalist=roster.generalist.name,
        consolidator=roster.consolidator.name,
        slots=backend.sim.num_parallel if backend.simulated else None,
        scale=scale,
    )
    live = st.empty()  # the live view goes once the results are drawn in its place
    with live.container(border=True, key="compare_live"):
        st.button(
            "Cancel",
            key="compare_cancel",
            icon=":material/stop:",
            on_click=lambda: st.session_state.update(compare_cancelled=True),
        )
        left, right = st.columns([2, 3])
        view = compare_live.CompareLiveView(race, left.empty(), right.empty())
        view.steps_slot.text("Starting the first run (single generalist)…")
        comp = engine.compare(snapshot, ctx.settings, progress=view.event, finished=view.finished)
    st.session_state["compare_data"] = (setup, comp, scale)
    live.empty()


if run:
    try:
        run_comparison()
    except SnapshotError as exc:
        st.error(sources.snapshot_error_message(exc), title="No snapshot to analyse")
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(safe.md(safe.ui_words(exc)), title="The comparison could not run")

stored = st.session_state.get("compare_data")
if stored is None:
    st.info(
        "Press **Run comparison** to time the before and after on the current "
        "snapshot: seven runs, drawn as they go."
    )
    st.stop()

ran_on, comp, scale = stored
seq, par, cached = comp.runs["sequential"], comp.runs["parallel"], comp.runs["cached"]


def shown_s(seconds: float) -> str:
    """Tiles are in real seconds: projected on the simulator, as measured elsewhere."""
    return f"{seconds if scale is None else projected_s(seconds, scale):.1f} s"


def bound_sentence(par: AnalysisResult) -> str:
    """What bounded the parallel run, from its own numbers (issue 11's honest bound: the
    chain it waited for, or the slots it had)."""
    advice = slot_advice(par)
    if advice is not None:
        return advice.sentence()
    slowest = critical_agent(par)
    cons = par.consolidation.work_s if par.consolidation else 0.0
    wall, path = par.execution_time_s, par.critical_path_s
    return (
        f"Bounded by its critical path: the slowest agent ({slowest or '—'}) plus the "
        f"consolidation ({shown_s(cons)}) make {shown_s(path)} of the {shown_s(wall)} wall; "
        f"the other {shown_s(max(0.0, wall - path))} is overhead (client, network, scheduling)."
    )


tiles = st.columns(3)
tiles[0].metric(
    "Wall: before → after",
    f"{shown_s(seq.execution_time_s)} → {shown_s(par.execution_time_s)}",
    help="Before: sequential + full consolidation. After: parallel + compact consolidation.",
)
tiles[1].metric(
    "Speedup",
    "—" if comp.speedup is None else f"{comp.speedup:.2f}×",
    help="Before's wall time ÷ after's. Ideal (a server slot for every agent): "
    + ("—" if comp.ideal_speedup is None else f"{comp.ideal_speedup:.2f}×"),
)
tiles[2].metric(
    "Cached",
    f"{cached.execution_time_s * 1000:.0f} ms",
    help="The after run again, served from the cache (real time: a lookup).",
)
measured = (
    f"measured {seq.execution_time_s:.2f} s → {par.execution_time_s:.2f} s"
    if scale is not None
    else ""
)
note = (
    f"Simulated Ollama ({par.simulated_profile or 'profile unknown'}) at time scale "
    f"{scale:g}: tiles and axis {PROJECTED_LABEL}; {measured}. "
    if scale is not None
    else ("Simulated Ollama (time scale 1). " if par.backend.simulated else "")
)
st.caption(safe.md(note + f"Ran on {ran_on}."))
st.plotly_chart(
    charts.stacked_waterfalls(
        seq,
        par,
        titles=("Before: sequential, full consolidation", "After: parallel, compact"),
        scale=scale,
        row_px=16,
    ),
    key="compare_waterfalls",
)
st.markdown(safe.md(safe.ui_words(bound_sentence(par))), help=render.slots_text(par))


def projected(name: str, seconds: float | None) -> dict[str, str]:
    """The "<name>, projected (s)" column beside a scaled time (none when times are real).
    None: a time that is not simulated (a cache hit's lookup), shown as "—" with why."""
    if scale is None:
        return {}
    cell = (
        "— (a cache lookup: not simulated)"
        if seconds is None
        else f"{projected_s(seconds, scale):.1f}"
    )
    return {f"{name}, projected (s)": cell}


def projection_note() -> None:
    if scale is not None:
        st.caption(
            f"*projected*: {PROJECTED_LABEL}, the measured time ÷ the time scale {scale:g}. "
            "Overheads that do not scale (Python, HTTP on loopback) are magnified by the "
            "same factor, so a projection slightly overstates."
        )


def runs_tab(comp: Comparison) -> None:
    table = pd.DataFrame(
        [
            {
                "run": r.run,
                "time (s)": round(r.wall_s, 3),
                **projected("time", None if r.cache_hit else r.wall_s),
                "critical path (s)": round(r.critical_path_s, 3),
                **projected("critical path", r.critical_path_s),
                "confidence": r.confidence,
                "tier": r.tier,
                "agents": r.agents,
                "cache hit": r.cache_hit,
            }
            for r in comp.rows
        ]
    )
    st.dataframe(table, hide_index=True)
    projection_note()
    st.plotly_chart(charts.compare_bars(comp.rows), key="compare_bars")
    if comp.serialisation.serialised and slot_advice(comp.runs["parallel"]) is None:
        st.warning(
            "The server ran the agents one at a time (OLLAMA_NUM_PARALLEL=1?) — set "
            "OLLAMA_NUM_PARALLEL=6 (and enough memory) to run them in parallel. "
            f"Agents queued {comp.serialisation.queued_s:.1f} s in all, "
            f"{comp.serialisation.share:.0%} of the {comp.serialisation.wall_s:.1f} s run.",
            icon=":material/hourglass_top:",
        )
    st.caption(safe.md(render.slots_text(comp.runs["parallel"])))


def tokens(count: int | None) -> str:
    return "—" if count is None else str(count)


def before_after(before: float, after: float) -> tuple[str, str | None]:
    """'0.70 s → 0.12 s', and its projection to real time when the times are scaled."""
    value = f"{before:.2f} s → {after:.2f} s"
    if scale is None:
        return value, None
    real = f"{projected_s(before, scale):.1f} s → {projected_s(after, scale):.1f} s"
    return value, f"{real} {PROJECTED_LABEL}"


def variants_tab(comp: Comparison) -> None:
    """The consolidation variants: what they are, their table, the headline tiles and
    two pairs of waterfalls."""
    if not comp.variants:
        st.info("This comparison has no consolidation variants (it was run by an older Quorum).")
        return
    st.caption(
        "Three more fresh parallel runs of the same snapshot that differ only in how the "
        "Consolidator works: it rewrites every insight (full, as the sequential baseline "
        "did), or ranks and groups the agents' finding ids (compact); cold, or with its "
        "prompt prefilled in a free server slot after each answer (warmed). Evaluated prompt "
        "tokens are the ones the server really read; cached ones it reused from a slot's KV "
        "cache."
        + (
            " Each variant ran on a simulated server of its own, with empty slots."
            if isolates_variants(backend)
            else " A real server keeps its slots' KV cache between runs, so a later variant "
            "may find more of its prompt cached."
        )
    )
    rows = comp.consolidation_rows
    variants_table(rows)
    by_key = {row.key: row for row in rows}
    if "full_cold" in by_key and "compact_warm" in by_key:
        variants_tiles(by_key["full_cold"], by_key["compact_warm"])
    variants_waterfalls(comp.variants)


def variants_table(rows: tuple[ConsolidationRow, ...]) -> None:
    """One column per variant, one row per measure: three variants side by side fit."""
    by_variant = pd.DataFrame(
        [
            {
                "consolidation": row.label,
                "wall (s)": round(row.wall_s, 3),
                **projected("wall", row.wall_s),
                "after last agent (s)": round(row.after_last_agent_s, 3),
                **projected("after last agent", row.after_last_agent_s),
                "prompt evaluated": tokens(row.evaluated_tokens),
                "prompt cached": tokens(row.cached_tokens),
                "warm-ups (evaluated)": (
                    f"{row.warmups} ({tokens(row.warmup_evaluated_tokens)})"
                    if row.warmups
                    else "— (none sent)"
                ),
                "method": row.method or "—",
                "tier": row.tier,
            }
            for row in rows
        ]
    )
    variant_table = (
        by_variant.set_index("consolidation")
        .T.map(
            lambda v: (
                "—" if v is None or pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v)
            )
        )
        .rename_axis("measure")
        .reset_index()
    )
    st.dataframe(variant_table, hide_index=True, key="compare_consolidation_table")
    st.caption(
        "*prompt evaluated / cached*: the final consolidation call's prompt tokens; "
        "*warm-ups*: how many prefill-only requests were sent, and the tokens they evaluated."
    )
    projection_note()


def variants_tiles(full_row: ConsolidationRow, warm_row: ConsolidationRow) -> None:
    """Full, no warm-up → compact, warmed: after the last agent, the wall, the tokens."""
    cols = st.columns(3)
    for col, label, before, after, why in (
        (
            cols[0],
            "After the last agent: full → compact, warmed",
            full_row.after_last_agent_s,
            warm_row.after_last_agent_s,
            "From the last answer the run waited for to the end of the run: what the "
            "consolidation adds to the agents' phase.",
        ),
        (
            cols[1],
            "Parallel wall: full → compact, warmed",
            full_row.wall_s,
            warm_row.wall_s,
            "End to end, the agents and the consolidation.",
        ),
    ):
        value, real = before_after(before, after)
        col.metric(label, value, delta=real, delta_color="off", delta_arrow="off", help=why)
    cols[2].metric(
        "Consolidator prompt tokens evaluated",
        f"{tokens(full_row.evaluated_tokens)} → {tokens(warm_row.evaluated_tokens)}",
        help="The final consolidation call's prompt tokens the server evaluated (not "
        "reused from a slot's KV cache): full, no warm-up → compact, warmed.",
    )


def variants_waterfalls(variants: dict[str, AnalysisResult]) -> None:
    labels = {v.key: v.label for v in CONSOLIDATION_VARIANTS}
    for top, bottom, key in (
        ("full_cold", "compact_warm", "compare_consolidation_full"),
        ("compact_cold", "compact_warm", "compare_consolidation_warm"),
    ):
        if top in variants and bottom in variants:
            st.plotly_chart(
                charts.stacked_waterfalls(
                    variants[top],
                    variants[bottom],
                    titles=(labels[top], labels[bottom]),
                    scale=scale,
                ),
                key=key,
            )


runs_view, variants_view, after_view = st.tabs(
    ["All runs", "Consolidation: full vs compact, cold vs warm", "After: insights and timings"]
)
with runs_view:
    runs_tab(comp)
with variants_view:
    variants_tab(comp)
with after_view:
    render.insight_cards(par.insights)
    render.agent_table(par)
