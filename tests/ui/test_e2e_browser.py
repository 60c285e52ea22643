"""The dashboard in a real browser: `streamlit run app.py`, Debian's Chromium, four pages.

One test walks Live insights → Compare → History → Settings on the embedded simulated
server at a small time scale, checks what each page must show, and saves a screenshot of
each (`$QUORUM_SCREENSHOT_DIR`, else test-artifacts/screenshots/; `make screenshots`
refreshes the README's images in docs/screenshots/). No sleeps: every wait is on the
server's health endpoint, the process, or a Playwright condition with a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.run.agents import DEFAULT_ROSTER
from tests.support.browser import (
    IDLE,
    RUN_TIMEOUT_MS,
    TIME_SCALE,
    assert_no_errors,
    open_page,
    save_screenshot,
    wait_idle,
)
from tests.support.dashboard import Server, dashboard, simulated_env

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The dashboard on a free loopback port: simulated backend, data in `tmp_path`."""
    with dashboard(tmp_path, simulated_env(TIME_SCALE)) as srv:
        yield srv


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
