"""Compare: one snapshot, four runs (single, sequential, parallel, parallel from cache),
then the consolidation variants (full vs compact, cold vs warm)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.service import isolates_variants
from engine.snapshot import SnapshotError
from engine.timeline import (
    CONSOLIDATION_VARIANTS,
    PROJECTED_LABEL,
    comparison,
    consolidation_rows,
    consolidation_runs,
    projected_s,
    projection_scale,
    slot_advice,
)
from ui import charts, render, safe, state

ctx = state.context()
st.title("Compare")
st.caption(
    "One snapshot, four runs: a single generalist agent, the five specialists one after "
    "another, the five in parallel, then the parallel run again from the cache; then three "
    "fresh parallel runs that consolidate differently (full vs compact, cold vs warm)."
)

if ctx.backend is None:
    st.warning(safe.md(ctx.backend_error or "Fix the backend settings in the sidebar."))
    st.stop()

backend = ctx.backend
if backend.simulated:
    slots = st.slider(
        "Simulated server slots (OLLAMA_NUM_PARALLEL)",
        1,
        8,
        value=backend.sim.slots,
        key="compare_slots",
        help="Run the comparison against a simulated server with this many slots: "
        "1 shows what a default Ollama does to a parallel run.",
    )
    backend = state.with_slots(backend, int(slots))

setup = f"{backend.kind} · {ctx.source.label}" + (
    f" · {backend.sim.slots} slot(s) · time scale {backend.sim.time_scale:g}"
    if backend.simulated
    else f" · {backend.model}"
)
if st.button("Run comparison", type="primary", key="compare_run", icon=":material/play_arrow:"):
    engine = state.engine_for(ctx, backend)
    try:
        snapshot = ctx.source.read()
        if engine is not None:
            with st.spinner(
                "Running single, sequential, parallel, cached, then the consolidation variants…",
                show_time=True,
            ):
                # The scale is kept with the data: the sidebar may change before the next rerun.
                scale = projection_scale(backend.simulated, backend.sim.time_scale)
                data = engine.compare(snapshot, ctx.settings)
                st.session_state["compare_data"] = (setup, data, scale)
    except SnapshotError as exc:
        st.error(state.snapshot_error_message(exc), title="No snapshot to analyse")
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(safe.md(exc), title="The comparison could not run")

stored = st.session_state.get("compare_data")
if stored is None:
    st.info("Press **Run comparison** to time the four runs on the current snapshot.")
    st.stop()

ran_on, data, scale = stored
comp = comparison(data)
st.caption(safe.md(f"Ran on {ran_on}"))
if any(r.backend.simulated for r in comp.runs.values()):
    render.simulated_notice(comp.runs["parallel"].simulated_profile)
variants = consolidation_runs(data)
if scale is not None:
    seq, par = comp.runs["sequential"].execution_time_s, comp.runs["parallel"].execution_time_s
    headline = (
        f"sequential {projected_s(seq, scale):.0f} s → parallel {projected_s(par, scale):.0f} s"
    )
    if "full_cold" in variants and "compact_warm" in variants:
        full, warm = variants["full_cold"], variants["compact_warm"]
        headline += (
            f" · full consolidation {projected_s(full.execution_time_s, scale):.0f} s → "
            f"compact, warmed {projected_s(warm.execution_time_s, scale):.0f} s"
        )
    st.info(
        safe.md(
            f"{PROJECTED_LABEL.capitalize()}: {headline}. The simulator ran at time scale "
            f"{scale:g}, so every measured time is ÷ {scale:g} here: "
            f"{seq:.2f} s measured is {projected_s(seq, scale):.1f} s projected."
        ),
        icon=":material/schedule:",
    )

tiles = st.columns(4)
tiles[0].metric(
    "Speedup",
    "–" if comp.speedup is None else f"{comp.speedup:.2f}×",
    help="Sequential wall time ÷ parallel wall time.",
)
tiles[1].metric(
    "Ideal speedup",
    "–" if comp.ideal_speedup is None else f"{comp.ideal_speedup:.2f}×",
    help="Sequential wall time ÷ the parallel run's critical path (its slowest agent plus "
    "the consolidation, without queueing): what unlimited server slots would give.",
)
parallel_wall = comp.runs["parallel"].execution_time_s
tiles[2].metric(
    "Parallel wall",
    f"{parallel_wall:.2f} s",
    delta=None if scale is None else f"{projected_s(parallel_wall, scale):.1f} s {PROJECTED_LABEL}",
    delta_color="off",
    delta_arrow="off",
    help=None if scale is None else f"Measured at time scale {scale:g}; ÷ {scale:g} for real time.",
)
tiles[3].metric("Cached", f"{comp.runs['cached'].execution_time_s * 1000:.0f} ms")

advice = slot_advice(comp.runs["parallel"])
if advice is not None:
    st.warning(safe.md(advice.sentence()), icon=":material/hourglass_top:")
elif comp.serialisation.serialised:
    st.warning(
        "The server ran the agents one at a time (OLLAMA_NUM_PARALLEL=1?) — set "
        "OLLAMA_NUM_PARALLEL=6 (and enough memory) to run them in parallel. "
        f"Agents queued {comp.serialisation.queued_s:.1f} s in all, "
        f"{comp.serialisation.share:.0%} of the {comp.serialisation.wall_s:.1f} s parallel run.",
        icon=":material/hourglass_top:",
    )
st.caption(safe.md(render.slots_text(comp.runs["parallel"])))


def projected(name: str, seconds: float | None) -> dict[str, float | None]:
    """The "<name>, projected (s)" column beside a scaled time (none when times are real).
    None: a time that is not simulated (a cache hit's lookup)."""
    if scale is None:
        return {}
    return {
        f"{name}, projected (s)": None if seconds is None else round(projected_s(seconds, scale), 1)
    }


def projection_note() -> None:
    if scale is not None:
        st.caption(
            f"*projected*: {PROJECTED_LABEL}, the measured time ÷ the time scale {scale:g}. "
            "Overheads that do not scale (Python, HTTP on loopback) are magnified by the "
            "same factor, so a projection slightly overstates."
        )


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
if scale is None:
    left, right = st.columns([3, 2])
    left.dataframe(table, hide_index=True)
else:  # the projected columns need the page's width
    st.dataframe(table, hide_index=True)
    projection_note()
    left, right = st.columns([3, 2])
with right if scale is None else left:
    st.plotly_chart(charts.compare_bars(comp.rows), key="compare_bars")

st.markdown("#### Sequential vs parallel, on one time axis")
st.plotly_chart(
    charts.stacked_waterfalls(
        comp.runs["sequential"],
        comp.runs["parallel"],
        titles=("Sequential: one agent after another", "Parallel: all agents at once"),
    ),
    key="compare_waterfalls",
)
with st.expander("Parallel run: insights and agent timings"):
    render.insight_cards(comp.runs["parallel"].insights)
    render.agent_table(comp.runs["parallel"])

st.markdown("#### Consolidation: full vs compact, cold vs warm")
if not variants:
    st.info("This comparison has no consolidation variants (it was run by an older Quorum).")
    st.stop()
st.caption(
    "Three more fresh parallel runs of the same snapshot that differ only in how the "
    "Consolidator works: it rewrites every insight (full, the plan's way), or ranks and "
    "groups the agents' finding ids (compact); cold, or with its prompt prefilled in a free "
    "server slot after each answer (warmed). Evaluated prompt tokens are the ones the server "
    "really read; cached ones it reused from a slot's KV cache."
    + (
        " Each variant ran on a simulated server of its own, with empty slots."
        if isolates_variants(backend)
        else " A real server keeps its slots' KV cache between runs, so a later variant "
        "may find more of its prompt cached."
    )
)


def tokens(count: int | None) -> str:
    return "–" if count is None else str(count)


rows = consolidation_rows(data)
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
                f"{row.warmups} ({tokens(row.warmup_evaluated_tokens)})" if row.warmups else "–"
            ),
            "method": row.method or "–",
            "tier": row.tier,
        }
        for row in rows
    ]
)
# One column per variant, one row per measure: three variants side by side fit the page.
variant_table = (
    by_variant.set_index("consolidation")
    .T.map(
        lambda v: "–" if v is None or pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v)
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
by_key = {row.key: row for row in rows}
labels = {v.key: v.label for v in CONSOLIDATION_VARIANTS}


def before_after(before: float, after: float) -> tuple[str, str | None]:
    """'0.70 s → 0.12 s', and its projection to real time when the times are scaled."""
    value = f"{before:.2f} s → {after:.2f} s"
    if scale is None:
        return value, None
    real = f"{projected_s(before, scale):.1f} s → {projected_s(after, scale):.1f} s"
    return value, f"{real} {PROJECTED_LABEL}"


if "full_cold" in by_key and "compact_warm" in by_key:
    full_row, warm_row = by_key["full_cold"], by_key["compact_warm"]
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
if scale is not None:
    st.caption(
        f"The waterfalls' axes are measured seconds at time scale {scale:g}: "
        f"× {1 / scale:g} for real time."
    )
for top, bottom, key in (
    ("full_cold", "compact_warm", "compare_consolidation_full"),
    ("compact_cold", "compact_warm", "compare_consolidation_warm"),
):
    if top in variants and bottom in variants:
        st.plotly_chart(
            charts.stacked_waterfalls(
                variants[top], variants[bottom], titles=(labels[top], labels[bottom])
            ),
            key=key,
        )
