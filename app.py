"""Quorum's dashboard: `streamlit run app.py`.

The sidebar (backend, snapshot source, engine settings) is drawn here, once per run,
before the selected page; pages read its decisions with `ui.state.context()`.
"""

from __future__ import annotations

import streamlit as st

from ui import state

st.set_page_config(page_title="Quorum", layout="wide", page_icon="🛰️")

page = st.navigation(
    [
        st.Page("pages/live.py", title="Live insights", icon=":material/monitoring:", default=True),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("pages/history.py", title="History", icon=":material/history:"),
        st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
    ]
)
state.render_sidebar()
page.run()
