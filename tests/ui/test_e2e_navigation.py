"""A fresh server's first page load never draws Streamlit's file-based page menu.

A Streamlit process runs its first request in the legacy pages-directory mode until the
first `st.navigation` call, and with a `pages/` folder next to app.py that mode builds a
menu (`stSidebarNav`) from the file names. `.streamlit/config.toml` turns that menu off
(`client.showSidebarNavigation = false`), app.py hides st.navigation's own menu, and the
sidebar draws the app's page links (ui/navigation.py).

Each case starts its own server (the mode is per process) and opens one URL in Debian's
Chromium. A MutationObserver installed before the document exists records every element
with data-testid=stSidebarNav that is ever attached, so a menu drawn for one frame and
removed again is caught: the check covers the load from its first paint, not the page as
it looks after a wait. The control case turns the option back on and must see the menu,
which shows the observer can fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.browser import IDLE, RUN_TIMEOUT_MS, TIME_SCALE
from tests.support.dashboard import dashboard, simulated_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

# Runs before any of the page's scripts: every added element (or one inside it) that is
# Streamlit's page menu is counted, whether or not it is still there a moment later.
RECORD_MENU_JS = """
window.__menusDrawn = 0;
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const menu = '[data-testid="stSidebarNav"]';
      if (node.matches(menu) || node.querySelector(menu)) window.__menusDrawn += 1;
    }
  }
}).observe(document, {childList: true, subtree: true});
"""
APP_LINKS = ["Live insights", "Compare", "History", "Settings"]


def first_load(browser: Browser, tmp_path: Path, path: str, env: dict[str, str]) -> Page:
    """`path` opened as the first request of a fresh dashboard; returns once it is idle."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(RECORD_MENU_JS)
    with dashboard(tmp_path, {**simulated_env(TIME_SCALE), **env}) as server:
        page.goto(server.url + path)
        page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
        # The sidebar's Backend widget: app.py ran (the legacy mode runs a page alone).
        backend = page.get_by_test_id("stSidebar").get_by_role(
            "heading", name="Backend", exact=True
        )
        backend.wait_for(timeout=RUN_TIMEOUT_MS)
        page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
    return page


def menus_drawn(page: Page) -> int:
    return int(page.evaluate("() => window.__menusDrawn"))


@pytest.mark.parametrize(("path", "title"), [("/", "Live insights"), ("/compare", "Compare")])
def test_a_fresh_server_never_draws_the_file_based_menu(
    browser: Browser, tmp_path: Path, path: str, title: str
) -> None:
    from playwright.sync_api import expect

    page = first_load(browser, tmp_path, path, {})
    expect(page.locator("h1", has_text=title)).to_be_visible()
    assert page.url.endswith(path), page.url
    assert menus_drawn(page) == 0, f"Streamlit's file-based menu was drawn on {path}"
    links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    expect(links).to_have_count(len(APP_LINKS))
    for name in APP_LINKS:
        expect(links.get_by_text(name, exact=True)).to_be_visible()


def test_the_observer_sees_the_menu_when_the_option_is_on(browser: Browser, tmp_path: Path) -> None:
    # Control: the same first load with Streamlit's default (the menu shown) must be seen.
    env = {"STREAMLIT_CLIENT_SHOW_SIDEBAR_NAVIGATION": "true"}
    page = first_load(browser, tmp_path, "/compare", env)
    assert menus_drawn(page) > 0, "the observer did not see the legacy menu"
