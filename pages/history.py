"""History: every analysis this data directory has seen, newest first."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from engine.history import row, to_csv, to_json
from ui import charts, render, safe, state

HISTORY_LIMIT = 1000  # the table and chart stay responsive; the file keeps more

ctx = state.context()
history = state.history_for(ctx)
st.title("History")
st.caption(safe.md(f"From {history.where} (newest first, at most {HISTORY_LIMIT} shown)."))

results = history.load(limit=HISTORY_LIMIT)
if not results:
    st.info("No runs yet: open **Live insights** or **Compare** to run an analysis.")
    st.stop()


def when(created_at: float) -> str:
    return datetime.fromtimestamp(created_at).strftime("%Y-%m-%d %H:%M:%S")


table = pd.DataFrame(
    [
        {
            "time": datetime.fromtimestamp(r.created_at),
            **{k: v for k, v in row(r).items() if k != "created_at"},
        }
        for r in results
    ]
)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss"),
        "execution_time_s": st.column_config.NumberColumn("wall time (s)", format="%.3f"),
        "critical_path_s": st.column_config.NumberColumn("critical path (s)", format="%.3f"),
        "cache_hit": st.column_config.CheckboxColumn("cache hit"),
    },
)

downloads = st.container(horizontal=True)
downloads.download_button(
    "Download JSON",
    to_json(results),
    file_name="quorum-history.json",
    mime="application/json",
    icon=":material/download:",
    key="history_json",
)
downloads.download_button(
    "Download CSV",
    to_csv(results),
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

st.markdown("#### Wall time over time")
st.plotly_chart(charts.history_trend(results), key="history_trend")
st.caption("Colour is the tier; an open diamond is a cache hit.")

st.markdown("#### One run")
index = st.selectbox(
    "Run",
    range(len(results)),
    format_func=lambda i: (
        f"{when(results[i].created_at)} · {results[i].mode} · {results[i].backend.kind} · "
        f"{results[i].execution_time_s:.2f} s · {results[i].tier}"
        + (" · cached" if results[i].cache.hit else "")
    ),
    key="history_run",
)
chosen = results[index or 0]
st.caption(safe.md(f"Snapshot {chosen.snapshot_key} · model {chosen.backend.model}"))
render.result_details(chosen, ttl_s=None, key="history")
