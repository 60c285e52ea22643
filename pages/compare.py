"""Compare: one snapshot, four runs (single, sequential, parallel, parallel from cache)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.snapshot import SnapshotError
from engine.timeline import comparison, slot_advice
from ui import charts, render, safe, state

ctx = state.context()
st.title("Compare")
st.caption(
    "One snapshot, four runs: a single generalist agent, the five specialists one after "
    "another, the five in parallel, then the parallel run again from the cache."
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
        value=backend.sim.num_parallel,
        key="compare_slots",
        help="Run the comparison against a simulated server with this many slots: "
        "1 shows what a default Ollama does to a parallel run.",
    )
    backend = state.with_slots(backend, int(slots))

setup = f"{backend.kind} · {ctx.source.label}" + (
    f" · {backend.sim.num_parallel} slot(s) · time scale {backend.sim.time_scale:g}"
    if backend.simulated
    else f" · {backend.model}"
)
if st.button("Run comparison", type="primary", key="compare_run", icon=":material/play_arrow:"):
    engine = state.engine_for(ctx, backend)
    try:
        snapshot = ctx.source.read()
        if engine is not None:
            with st.spinner("Running single, sequential, parallel, then cached…", show_time=True):
                st.session_state["compare_data"] = (setup, engine.compare(snapshot, ctx.settings))
    except SnapshotError as exc:
        st.error(state.snapshot_error_message(exc), title="No snapshot to analyse")
    except (OSError, RuntimeError, ValueError) as exc:
        st.error(safe.md(exc), title="The comparison could not run")

stored = st.session_state.get("compare_data")
if stored is None:
    st.info("Press **Run comparison** to time the four runs on the current snapshot.")
    st.stop()

ran_on, data = stored
comp = comparison(data)
st.caption(safe.md(f"Ran on {ran_on}"))
if any(r.backend.simulated for r in comp.runs.values()):
    render.simulated_notice(comp.runs["parallel"].simulated_profile)

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
tiles[2].metric("Parallel wall", f"{comp.runs['parallel'].execution_time_s:.2f} s")
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

table = pd.DataFrame(
    [
        {
            "run": r.run,
            "time (s)": round(r.wall_s, 3),
            "critical path (s)": round(r.critical_path_s, 3),
            "confidence": r.confidence,
            "tier": r.tier,
            "agents": r.agents,
            "cache hit": r.cache_hit,
        }
        for r in comp.rows
    ]
)
left, right = st.columns([3, 2])
with left:
    st.dataframe(table, hide_index=True)
with right:
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
