"""Debian's Chromium driven by Playwright for the dashboard's browser tests: the launch
flags, waits on Streamlit's own state (never a sleep), error checks and screenshots, and the
`browser` and `page` fixtures (offered to every test module by tests/conftest.py).

Screenshots go to `$QUORUM_SCREENSHOT_DIR`, else test-artifacts/screenshots/ (`make
screenshots` points it at docs/screenshots/ to refresh the README's images).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_ENV = "QUORUM_SCREENSHOT_DIR"
DEFAULT_SCREENSHOT_DIR = REPO / "test-artifacts" / "screenshots"
TIME_SCALE = "0.05"  # a parallel run takes ≈ 1.5 s, the whole comparison ≈ 6 s
RUN_TIMEOUT_MS = 60_000  # one analysis or comparison, generous for a loaded 2-core machine
STEP_TIMEOUT_MS = 30_000  # anything else: a page switch, an element appearing
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}
MAX_SCREENSHOT_HEIGHT = 2400  # a whole page, cut off there so a PNG stays under 450 KB
MAX_PNG_BYTES = 450_000  # a first run on Ollama adds its slot-probe rows to the waterfall
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Hermetic: only the dashboard on loopback resolves (Streamlit would fetch the
    # material-icon favicon from fonts.gstatic.com).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
# The document's height, or that of Streamlit's scrolling main area or sidebar if taller.
CONTENT_HEIGHT_JS = """() => Math.max(
    document.documentElement.scrollHeight,
    ...[...document.querySelectorAll(
        '[data-testid=stMain], [data-testid=stSidebarContent]')].map(e => e.scrollHeight))"""
TWO_FRAMES_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


@pytest.fixture
def browser(chromium_executable: str) -> Iterator[Browser]:
    """Headless Chromium for one test; closed after it, on failure too."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab at the standard viewport, in a context of its own."""
    tab = new_page(browser, VIEWPORT["width"], VIEWPORT["height"])
    yield tab
    tab.context.close()


def new_page(browser: Browser, width: int, height: int) -> Page:
    """A page in a fresh context (no cookies, no session): as a link opened elsewhere."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, reduced_motion="reduce"
    )
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    return page


def screenshot_dir() -> Path:
    configured = os.environ.get(SCREENSHOT_ENV)
    if not configured:
        return DEFAULT_SCREENSHOT_DIR
    path = Path(configured).expanduser()
    return path if path.is_absolute() else REPO / path


def wait_idle(page: Page, title: str, *, timeout_ms: float = STEP_TIMEOUT_MS) -> None:
    """The page `title` has been drawn and its script run has finished."""
    from playwright.sync_api import expect

    # The title first: before the first run starts the app also reads "notRunning".
    expect(page.locator("h1", has_text=title)).to_be_visible(timeout=timeout_ms)
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def open_page(page: Page, link: str, title: str) -> None:
    """Follow the sidebar's own page link (ui/navigation.py; Streamlit's menu is hidden)."""
    nav_links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    nav_links.get_by_text(link, exact=True).click()
    wait_idle(page, title)


def assert_no_errors(page: Page, errors: list[str]) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    assert errors == [], f"JavaScript errors in the page: {errors}"


def save_screenshot(page: Page, name: str) -> Path:
    """The whole page (the viewport grown to the content's height, within bounds) as PNG."""
    height = int(page.evaluate(CONTENT_HEIGHT_JS))
    page.set_viewport_size(
        {
            "width": VIEWPORT["width"],
            "height": max(VIEWPORT["height"], min(height, MAX_SCREENSHOT_HEIGHT)),
        }
    )
    page.evaluate(TWO_FRAMES_JS)  # let the relayout paint
    page.wait_for_selector(IDLE, state="attached")
    path = screenshot_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, scale="css", animations="disabled", caret="hide")
    page.set_viewport_size(VIEWPORT)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert len(data) < MAX_PNG_BYTES, f"{path} is {len(data):,} bytes"
    return path
