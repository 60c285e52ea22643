"""The dashboard in a real browser: `streamlit run app.py`, Debian's Chromium, four pages.

One test walks Live insights → Compare → History → Settings on the embedded simulated
server at a small time scale, checks what each page must show, and saves a screenshot of
each (`$QUORUM_SCREENSHOT_DIR`, else test-artifacts/screenshots/; `make screenshots`
refreshes the README's images in docs/screenshots/). No sleeps: every wait is on the
server's health endpoint, the process, or a Playwright condition with a timeout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.run.agents import DEFAULT_ROSTER
from tests.dashboard_process import Server, dashboard

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
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
def server(tmp_path: Path) -> Iterator[Server]:
    """The dashboard on a free loopback port: simulated backend, data in `tmp_path`."""
    env = {
        "QUORUM_BACKEND": "simulated",
        "QUORUM_SIM_TIME_SCALE": TIME_SCALE,
        "OLLAMA_HOST": "127.0.0.1:9",  # nothing listens on the discard port
    }
    with dashboard(tmp_path, env) as srv:
        yield srv


@pytest.fixture
def page(chromium_executable: str, tmp_path: Path) -> Iterator[Page]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
            tab = context.new_page()
            tab.set_default_timeout(STEP_TIMEOUT_MS)
            yield tab
            context.close()
        finally:
            browser.close()


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


def test_dashboard_in_a_real_browser(page: Page, server: Server) -> None:
    # `page` first: without a browser the test skips before it starts a server.
    from playwright.sync_api import expect

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    main = page.get_by_test_id("stMain")
    simulated = main.get_by_text(re.compile(r"^Simulated Ollama — timings are modelled"))

    # Live insights: the analysis runs as the page loads.
    page.goto(server.url)
    wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
    expect(main.get_by_text(re.compile(r"^Analysis finished in"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    waterfall = main.get_by_test_id("stPlotlyChart")
    expect(waterfall).to_have_count(1)
    expect(waterfall).to_contain_text("seconds at real speed (projected; simulator at 0.05×)")
    badges = main.locator(".stMarkdownBadge")
    expect(badges.filter(has_text=re.compile(r"^CRITICAL$")).first).to_be_visible()
    # the status strip and the result header both carry them
    expect(badges.filter(has_text=re.compile(r"\bexcellent \d+$")).first).to_be_visible()
    expect(badges.filter(has_text="5/5 agents").first).to_be_visible()
    expect(simulated).to_be_visible()
    page.wait_for_selector(IDLE, state="attached")
    assert_no_errors(page, errors)
    save_screenshot(page, "live.png")

    # Compare: four runs of one snapshot.
    open_page(page, "Compare", "Compare")
    main.get_by_role("button", name="Run comparison").click()
    speedup = main.get_by_test_id("stMetric").filter(has_text="Speedup").first
    value = speedup.get_by_test_id("stMetricValue")
    expect(value).to_have_text(re.compile(r"^\d+\.\d\d×$"), timeout=RUN_TIMEOUT_MS)
    charts = main.get_by_test_id("stPlotlyChart")
    waterfalls = charts.filter(has_text="Before: sequential, full consolidation")
    expect(waterfalls).to_contain_text("After: parallel, compact")
    expect(
        main.get_by_text(re.compile(r"^Simulated Ollama \(baseline\) at time scale"))
    ).to_be_visible()
    page.wait_for_selector(IDLE, state="attached")
    assert float(value.inner_text().rstrip("×")) > 1.0, "parallel was not faster"
    assert_no_errors(page, errors)
    save_screenshot(page, "compare.png")

    # History: the live run and the comparison's four runs, newest first.
    open_page(page, "History", "History")
    runs = (server.data_dir / "history.jsonl").read_text().splitlines()
    assert len(runs) >= 5, f"expected the live run and 4 comparison runs, got {len(runs)}"
    table = main.get_by_test_id("stDataFrame").first
    # A dataframe is a canvas; its accessible table (header row + one per run) is the DOM.
    expect(table.locator("table[role=grid]")).to_have_attribute("aria-rowcount", str(len(runs) + 1))
    for mode in ("single", "sequential", "parallel"):
        cell = table.locator("td[role=gridcell]", has_text=re.compile(f"^{mode}$"))
        expect(cell.first).to_be_attached()
    expect(main.get_by_test_id("stPlotlyChart").first).to_be_visible()
    page.wait_for_selector(IDLE, state="attached")
    assert_no_errors(page, errors)
    save_screenshot(page, "history.png")

    # Settings: the roster (five specialists, the consolidator, the generalist).
    open_page(page, "Settings", "Settings")
    roster = main.get_by_test_id("stDataFrame").first
    members = [
        *(a.name for a in DEFAULT_ROSTER.specialists),
        DEFAULT_ROSTER.consolidator.name,
        DEFAULT_ROSTER.generalist.name,
    ]
    assert len(members) == 7
    for name in members:
        cell = roster.locator("td[role=gridcell]", has_text=re.compile(f"^{name}$"))
        expect(cell).to_have_count(1)
    assert_no_errors(page, errors)
    save_screenshot(page, "settings.png")

    assert "Traceback" not in server.log(), server.log()
