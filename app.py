"""Quorum's dashboard: `streamlit run app.py`.

The sidebar (page links, backend, snapshot source, engine settings) is drawn here, once
per run, before the selected page; pages read its decisions with `ui.context.context()`.
Routing (the page list, `?run=<id>`, `?view=wall`, sub-page URLs on a fresh server) is
in ui/navigation.py.
"""

from __future__ import annotations

import streamlit as st

from ui import navigation
from ui.sidebar import render_sidebar

wall = navigation.is_wall()
st.set_page_config(
    page_title="Quorum",
    layout="wide",
    page_icon="🛰️",
    initial_sidebar_state="collapsed" if wall else "auto",
)
page = navigation.select_page(wall)
render_sidebar(links=not wall)
navigation.follow_run_link(page)
navigation.run_page(page)
