"""Quorum's dashboard: `streamlit run app.py`.

The sidebar (backend, snapshot source, engine settings) is drawn here, once per run,
before the selected page; pages read its decisions with `ui.state.context()`.

Two addresses other tools link to: `?run=<id>` opens that run (History), and
`?view=wall` is the full-screen layout for a screen on a wall (no navigation, the
sidebar collapsed).
"""

from __future__ import annotations

import streamlit as st

from ui import state

wall = st.query_params.get("view") == "wall"
st.set_page_config(
    page_title="Quorum",
    layout="wide",
    page_icon="🛰️",
    initial_sidebar_state="collapsed" if wall else "auto",
)

live = st.Page("pages/live.py", title="Live insights", icon=":material/monitoring:", default=True)
history = st.Page("pages/history.py", title="History", icon=":material/history:")
if wall:
    page = st.navigation(
        [st.Page("pages/wall.py", title="Quorum wall", icon=":material/tv:", default=True)],
        position="hidden",
    )
else:
    page = st.navigation(
        [
            live,
            st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
            history,
            st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
        ]
    )
state.render_sidebar()
run_id = st.query_params.get("run")
if run_id and page.url_path == live.url_path:
    st.switch_page(history, query_params={"run": run_id})
page.run()
