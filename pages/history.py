"""History: every analysis this data directory has seen, newest first."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from engine.records import AnalysisResult
from engine.store.history import row, run_link, to_csv, to_json
from ui import charts, navigation, render, resources, safe
from ui import context as ui_context

HISTORY_LIMIT = 1000  # the table and chart stay responsive; the file keeps more

ctx = ui_context.context()
history = resources.history_for(ctx)
st.title("History")
st.caption(safe.md(f"From {history.where} (newest first, at most {HISTORY_LIMIT} shown)."))

results = history.load(limit=HISTORY_LIMIT)
if not results:
    st.info("No runs yet: open **Live insights** or **Compare** to run an analysis.")
    st.stop()

# A run link (`?run=<id>`, from an export, the API or a chat message): that run first.
linked = next((r for r in results if r.run_id and r.run_id == st.query_params.get("run")), None)
if linked is not None:
    with st.container(border=True, key="linked_run"):
        st.markdown(f"#### Run {safe.md(linked.run_id)}")
        st.caption(
            safe.md(f"{linked.host or '—'} · {linked.source or '—'} · {linked.mode}")
            + f" · {datetime.fromtimestamp(linked.created_at):%Y-%m-%d %H:%M:%S}"
        )
        render.result_details(linked, ttl_s=None, key="history_linked")


def when(created_at: float) -> str:
    return datetime.fromtimestamp(created_at).strftime("%Y-%m-%d %H:%M:%S")


def scale_text(result: AnalysisResult) -> str:
    if not result.backend.simulated:
        return "real server"
    scale = result.simulated_time_scale
    return "simulated, scale —" if scale is None else f"simulated × {scale:g}"


filters = st.container(horizontal=True)
hosts = sorted({r.host or "— (not recorded)" for r in results})
modes = sorted({r.mode for r in results})
scales = sorted({scale_text(r) for r in results})
host_pick = filters.multiselect("Host", hosts, key="history_host", placeholder="every host")
mode_pick = filters.multiselect("Mode", modes, key="history_mode", placeholder="every mode")
scale_pick = filters.multiselect("Time scale", scales, key="history_scale", placeholder="all")
fresh_only = filters.toggle("Fresh runs only", value=False, key="history_fresh")
shown = [
    r
    for r in results
    if (not host_pick or (r.host or "— (not recorded)") in host_pick)
    and (not mode_pick or r.mode in mode_pick)
    and (not scale_pick or scale_text(r) in scale_pick)
    and not (fresh_only and r.cache.hit)
]
if not shown:
    st.info("No run matches these filters.")
    st.stop()

link_base = navigation.dashboard_url()
table = pd.DataFrame(
    [
        {
            "time": datetime.fromtimestamp(r.created_at),
            **{k: v for k, v in row(r, link_base).items() if k != "created_at"},
            "time_scale": scale_text(r),
        }
        for r in shown
    ]
)
st.dataframe(
    table,
    hide_index=True,
    column_order=[
        "time",
        "host",
        "scenario",
        "source",
        "mode",
        "time_scale",
        "execution_time_s",
        "critical_path_s",
        "tier",
        "confidence",
        "agents_participated",
        "cache_hit",
        "link",
    ],
    column_config={
        "time": st.column_config.DatetimeColumn("Time", format="YYYY-MM-DD HH:mm:ss"),
        "host": st.column_config.TextColumn("Host"),
        "scenario": st.column_config.TextColumn("Scenario", help="Empty: not a scenario"),
        "source": st.column_config.TextColumn("Snapshot source"),
        "mode": st.column_config.TextColumn("Mode"),
        "time_scale": st.column_config.TextColumn("Server / time scale"),
        "execution_time_s": st.column_config.NumberColumn("Wall time (s)", format="%.3f"),
        "critical_path_s": st.column_config.NumberColumn("Critical path (s)", format="%.3f"),
        "tier": st.column_config.TextColumn("Tier"),
        "confidence": st.column_config.NumberColumn("Confidence"),
        "agents_participated": st.column_config.NumberColumn("Agents answered"),
        "cache_hit": st.column_config.CheckboxColumn("Cache hit"),
        "link": st.column_config.LinkColumn("Run link", display_text="open"),
    },
)
results = shown

downloads = st.container(horizontal=True)
downloads.download_button(
    "Download JSON",
    to_json(results, link_base),
    file_name="quorum-history.json",
    mime="application/json",
    icon=":material/download:",
    key="history_json",
)
downloads.download_button(
    "Download CSV",
    to_csv(results, link_base),
    file_name="quorum-history.csv",
    mime="text/csv",
    icon=":material/download:",
    key="history_csv",
)
with downloads.popover("Clear history…", icon=":material/delete:"):
    st.write("Delete every recorded run? The result cache is not touched.")
    if st.button("Delete all runs", type="primary", key="history_clear"):
        history.clear()
        st.rerun()

st.markdown("#### Wall time over time, per mode and time scale")
st.plotly_chart(charts.history_trend(results), key="history_trend")
st.caption(
    "One line per mode and server / time scale (fresh runs); an open diamond is a cache "
    "hit, which is a lookup, not a run, and is not joined to the lines."
)

st.markdown("#### One run")
wanted = st.query_params.get("run")
ids = [r.run_id for r in results]
if wanted and wanted not in ids:
    st.warning(
        safe.md(f"Run {wanted} is not among the {len(results)} runs shown")
        + " (a filter hides it, or it is older than the history kept)."
    )
index = st.selectbox(
    "Run",
    range(len(results)),
    index=ids.index(wanted) if wanted in ids else 0,
    format_func=lambda i: (
        f"{when(results[i].created_at)} · {results[i].host or '—'} · {results[i].mode} · "
        f"{results[i].backend.kind} · {results[i].execution_time_s:.2f} s · {results[i].tier}"
        + (" · cached" if results[i].cache.hit else "")
    ),
    key="history_run",
)
chosen = results[index or 0]
st.caption(
    safe.md(f"Snapshot {chosen.snapshot_key} · model {chosen.backend.model}")
    + (f" · run {safe.md(chosen.run_id)}" if chosen.run_id else "")
    + (f": {safe.md(run_link(chosen, link_base))}" if run_link(chosen, link_base) else "")
)
render.result_details(chosen, ttl_s=None, key="history")
