"""The dashboard's pages, how app.py routes to them, and the sidebar's links to them.

Streamlit draws no page menu of its own here: app.py calls `st.navigation(...,
position="hidden")` and the sidebar lists the pages with `st.page_link` (`page_links`).
`.streamlit/config.toml` sets `client.showSidebarNavigation = false`, which matters for
one case only: a fresh server process runs its first request in Streamlit's legacy
pages-directory mode (our pages live in `pages/`) until the first `st.navigation` call,
and in that mode Streamlit builds a menu from the file names. With the option off that
menu is hidden from the first paint.

In that mode a request for a sub-page URL (e.g. /compare) runs the page file without
app.py. The page's `ui.context.context()` notices (`entrypoint_ran`) and calls
`reroute_through_app`: one public `st.navigation` call leaves the legacy mode for the
process, and the rerun goes through app.py to the same page (a page's URL path, hence
its hash, is the file name in both modes).

Two addresses other tools link to: `?run=<id>` opens that run (History), and
`?view=wall` is the full-screen layout for a screen on a wall (no navigation links).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"
_ENTRYPOINT_KEY = "quorum_entrypoint_running"


@dataclass(frozen=True)
class Pages:
    """The pages of one run: the navigable ones (in link order) and the two app.py
    routes by name (Live is the default page; `?run=` goes to History)."""

    navigable: list[StreamlitPage]
    live: StreamlitPage
    history: StreamlitPage


def dashboard_pages() -> Pages:
    """The four pages of the normal layout (st.Page objects are built per run)."""
    live = st.Page(
        PAGES_DIR / "live.py", title="Live insights", icon=":material/monitoring:", default=True
    )
    history = st.Page(PAGES_DIR / "history.py", title="History", icon=":material/history:")
    navigable = [
        live,
        st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        history,
        st.Page(PAGES_DIR / "settings.py", title="Settings", icon=":material/settings:"),
    ]
    return Pages(navigable=navigable, live=live, history=history)


def wall_page() -> StreamlitPage:
    return st.Page(PAGES_DIR / "wall.py", title="Quorum wall", icon=":material/tv:", default=True)


def is_wall() -> bool:
    return st.query_params.get("view") == "wall"


def select_page(wall: bool) -> StreamlitPage:
    """The page this run shows (Streamlit's own menu hidden; `page_links` draws ours)."""
    if wall:
        return st.navigation([wall_page()], position="hidden")
    return st.navigation(dashboard_pages().navigable, position="hidden")


def follow_run_link(page: StreamlitPage) -> None:
    """`?run=<id>` on the default page opens that run on History."""
    run_id = st.query_params.get("run")
    pages = dashboard_pages()
    if run_id and page.url_path == pages.live.url_path:
        st.switch_page(pages.history, query_params={"run": run_id})


def run_page(page: StreamlitPage) -> None:
    """Run the selected page, marked as run by app.py (see `entrypoint_ran`)."""
    st.session_state[_ENTRYPOINT_KEY] = True
    try:
        page.run()
    finally:
        st.session_state.pop(_ENTRYPOINT_KEY, None)


def entrypoint_ran() -> bool:
    """True while app.py runs a page; False when Streamlit ran the page file alone."""
    return bool(st.session_state.get(_ENTRYPOINT_KEY))


def reroute_through_app() -> None:
    """Leave Streamlit's legacy pages-directory mode and rerun through app.py.

    `st.navigation` is the documented switch out of that mode; the rerun keeps the URL
    and its query parameters, so the user lands on the page they asked for."""
    select_page(is_wall())
    st.rerun()


def page_links() -> None:
    """The sidebar's navigation: one link per page (none on the wall)."""
    for page in dashboard_pages().navigable:
        st.page_link(page)
    st.divider()  # Streamlit's own menu ends with a rule too: the sidebar looks as before


def dashboard_url() -> str | None:
    """This dashboard's address as the browser sees it, for run links (`?run=<id>`)."""
    url = st.context.url
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}" if scheme and host else None
