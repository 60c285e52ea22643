"""The dashboard's story in a real browser (Debian's Chromium, headless): Compare drawing
live and fitting one 1440×900 screen, Live's labels, a run link in a fresh browser, and the
wall view at 1920×1080. Browser tests are CPU-heavy: run one at a time (`-k`).

Screenshots go where tests/ui/test_e2e_browser.py puts its own (`$QUORUM_SCREENSHOT_DIR`).
No sleeps: every wait is a Playwright condition with a timeout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.sources.snapshot import SCENARIOS
from tests.support.browser import (
    IDLE,
    RUN_TIMEOUT_MS,
    TWO_FRAMES_JS,
    assert_no_errors,
    new_page,
    screenshot_dir,
    wait_idle,
)
from tests.support.dashboard import dashboard, simulated_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

FOLD_PX = 900  # 1440×900: what a presenter's laptop shows without scrolling
# The race's right-most bar end (axis seconds) in the live Compare chart, or -1.
RACE_END_JS = """() => {
    const ends = [...document.querySelectorAll('.js-plotly-plot')]
        .flatMap(gd => (gd.data || []).filter(t => t.meta && t.meta.race_run))
        .flatMap(t => (t.base || []).map((b, i) => b + t.x[i]));
    return ends.length ? Math.max(...ends) : -1;
}"""
# Sidebar texts cut off by an ellipsis (wider than their box), e.g. a select's value.
TRUNCATED_JS = """() => [...document.querySelectorAll('[data-testid=stSidebar] *')]
    .filter(el => el.offsetParent && getComputedStyle(el).textOverflow === 'ellipsis'
        && el.scrollWidth > el.clientWidth + 1)
    .map(el => el.textContent.trim().slice(0, 60)).filter(text => text)"""
# Every visible text node's font size in the main area, as [text, px] pairs.
FONT_SIZES_JS = """() => {
    const main = document.querySelector('[data-testid=stMain]');
    const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    const out = [];
    while (walker.nextNode()) {
        const node = walker.currentNode, text = node.textContent.trim();
        const el = node.parentElement;
        if (!text || !el || !el.offsetParent) continue;
        out.push([text.slice(0, 40), parseFloat(getComputedStyle(el).fontSize)]);
    }
    return out;
}"""


def start(tmp_path: Path, time_scale: str) -> Any:
    return dashboard(tmp_path, simulated_env(time_scale))


def shot(page: Page, name: str) -> bytes:
    """The viewport as a PNG (what the user sees without scrolling)."""
    page.evaluate(TWO_FRAMES_JS)
    path = screenshot_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(path=path, animations="disabled", caret="hide")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


def race_end_above(page: Page, threshold: float) -> float:
    """The race chart's furthest bar end, once it is past `threshold` — read in the same
    evaluation that saw it there (the chart is redrawn between two evaluations, and a read
    in between finds no chart at all)."""
    handle = page.wait_for_function(
        f"() => {{ const end = ({RACE_END_JS})(); return end > {threshold} ? end : false; }}",
        timeout=RUN_TIMEOUT_MS,
    )
    return float(handle.json_value())


def bottom(locator: Any) -> float:
    box = locator.bounding_box()
    assert box is not None, "not laid out"
    return float(box["y"] + box["height"])


def test_compare_draws_live_then_fits_the_first_screen(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with start(tmp_path, "0.1") as server:  # the sequential run takes ≈ 8 s at 0.1
        page = new_page(browser, 1440, FOLD_PX)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        main = page.get_by_test_id("stMain")
        page.goto(f"{server.url}/compare")
        wait_idle(page, "Compare", timeout_ms=RUN_TIMEOUT_MS)
        main.get_by_role("button", name="Run comparison").click()

        # While it runs: a step list (never a bare spinner) and a race chart that grows.
        expect(main.get_by_text(re.compile(r"▶ running · before: sequential"))).to_be_visible(
            timeout=RUN_TIMEOUT_MS
        )
        expect(main.get_by_role("button", name="Cancel")).to_be_visible()
        first_end = race_end_above(page, 0.0)
        first = shot(page, "compare-live-1.png")
        second_end = race_end_above(page, first_end + 1)
        second = shot(page, "compare-live-2.png")
        assert second_end > first_end and first != second

        # Done: tiles and both waterfalls within the first 900 px.
        tiles = main.get_by_test_id("stMetric")
        expect(tiles.filter(has_text="Speedup").get_by_test_id("stMetricValue")).to_have_text(
            re.compile(r"^\d+\.\d\d×$"), timeout=RUN_TIMEOUT_MS * 2
        )
        page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
        expect(tiles.filter(has_text="Wall: before → after")).to_be_visible()
        waterfalls = main.get_by_test_id("stPlotlyChart").filter(
            has_text="Before: sequential, full consolidation"
        )
        expect(waterfalls).to_contain_text("After: parallel, compact")
        expect(waterfalls).to_contain_text("seconds at real speed (projected; simulator at 0.1×)")
        page.evaluate(TWO_FRAMES_JS)
        for tile in ("Wall: before → after", "Speedup", "Cached"):
            assert bottom(tiles.filter(has_text=tile)) <= FOLD_PX, f"tile {tile} below the fold"
        assert bottom(waterfalls) <= FOLD_PX, f"waterfalls end at {bottom(waterfalls):.0f} px"
        shot(page, "compare-fold.png")
        assert_no_errors(page, errors)


def test_live_labels_its_scale_reads_a_fall_as_a_fall_and_keeps_settings_advanced(
    browser: Browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with start(tmp_path, "0.05") as server:
        page = new_page(browser, 1440, FOLD_PX)
        main, sidebar = page.get_by_test_id("stMain"), page.get_by_test_id("stSidebar")
        page.goto(server.url)
        wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
        finished = main.get_by_text(re.compile(r"^Analysis finished in"))
        expect(finished).to_contain_text(
            re.compile(r"\d\.\d\d s \(≈ \d+\.\d s at real speed; simulator at 0\.05×\)"),
            timeout=RUN_TIMEOUT_MS,
        )
        strip = main.locator(".st-key-status_strip")
        expect(strip).to_contain_text("excellent 95")
        assert bottom(strip) <= FOLD_PX, "the status strip is not on the first screen"
        shot(page, "live-fold.png")

        # The same upload read twice, CPU 46 % then 28 %: the CPU tile falls, and says so.
        sidebar.get_by_text("Upload JSON", exact=True).click()
        dropzone = sidebar.get_by_test_id("stFileUploaderDropzoneInput")
        for cpu_pct, stamp in ((46, 1_796_400_000.0), (28, 1_796_400_060.0)):
            snap = {**SCENARIOS["healthy"], "cpu_util_pct": cpu_pct, "timestamp": stamp}
            path = tmp_path / f"read-{cpu_pct}" / "host.json"  # one name: one source
            path.parent.mkdir()
            path.write_text(json.dumps(snap, indent=cpu_pct % 7))
            dropzone.set_input_files(str(path))
            tile = main.get_by_test_id("stMetric").filter(has_text="U · CPU utilisation")
            expect(tile.get_by_test_id("stMetricValue")).to_have_text(f"{cpu_pct} %")
            page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
        delta = tile.get_by_test_id("stMetricDelta")
        expect(delta).to_contain_text("18 %")
        expect(delta.locator("[data-testid=stMetricDeltaIcon-Down]")).to_have_count(1)
        assert "source_kind=Upload+JSON" in page.url  # the view's settings are in the URL

        assert page.evaluate(TRUNCATED_JS) == []  # every sidebar label and value fits

        # Engine settings: a collapsed "Advanced" expander, marked once one is changed.
        advanced = sidebar.get_by_test_id("stExpander").filter(has_text="Advanced")
        expect(advanced.locator("details")).not_to_have_attribute("open", "")
        advanced.locator("summary").click()
        timeout = advanced.get_by_label("Per-agent timeout (s)")
        timeout.fill("12")
        timeout.press("Enter")
        expect(advanced.locator("summary")).to_contain_text("Advanced · 1 changed")
        page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
        shot(page, "live-advanced.png")


def test_a_run_link_opens_in_a_fresh_browser(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with start(tmp_path, "0.05") as server:
        first = new_page(browser, 1440, FOLD_PX)
        first.goto(server.url)
        wait_idle(first, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
        expect(first.get_by_text(re.compile(r"^Analysis finished in"))).to_be_visible(
            timeout=RUN_TIMEOUT_MS
        )
        first.context.close()
        line = (server.data_dir / "history.jsonl").read_text().splitlines()[0]
        run_id = json.loads(line)["run_id"]
        assert re.fullmatch(r"[0-9a-f]{12}", run_id)

        page = new_page(browser, 1440, FOLD_PX)  # no session, no cookies: a Slack link
        page.goto(f"{server.url}/?run={run_id}")
        wait_idle(page, "History", timeout_ms=RUN_TIMEOUT_MS)
        main = page.get_by_test_id("stMain")
        linked = main.locator(".st-key-linked_run")  # the run first, above the table
        expect(linked.get_by_text(f"Run {run_id}")).to_be_visible()
        assert bottom(linked.get_by_test_id("stPlotlyChart")) <= FOLD_PX + 400
        # the run the link names is the one selected below, with its link to share again
        expect(main.get_by_text(f"run {run_id}:")).to_contain_text(f"?run={run_id}")
        expect(main.get_by_test_id("stPlotlyChart").last).to_be_visible()
        shot(page, "run-link.png")


def test_the_wall_view_at_1920x1080(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with start(tmp_path, "0.05") as server:
        page = new_page(browser, 1920, 1080)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/?view=wall&refresh=60")
        main = page.get_by_test_id("stMain")
        expect(main.get_by_text(re.compile(r"excellent 95"))).to_be_visible(timeout=RUN_TIMEOUT_MS)
        page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
        expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
        area = main.bounding_box()  # no sidebar beside it: the whole screen is the wall
        assert area is not None and area["x"] < 50 and area["width"] > 1850, area
        expect(main.get_by_text("CRITICAL").first).to_be_visible()
        expect(main.get_by_text(re.compile(r"analysed \d+ s ago"))).to_be_visible()
        expect(main.get_by_text("Refreshes every 60 s", exact=False)).to_be_visible()
        page.evaluate(TWO_FRAMES_JS)
        small = [(t, px) for t, px in page.evaluate(FONT_SIZES_JS) if px < 20]
        assert not small, f"text under 20 px: {small[:8]}"
        last_value = main.get_by_role("heading", level=2).last  # the Network E tile's value
        assert bottom(last_value) <= 1080, "the tiles do not fit the screen"
        shot(page, "wall.png")
        assert_no_errors(page, errors)


def test_a_running_comparison_can_be_cancelled(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with start(tmp_path, "0.1") as server:
        page = new_page(browser, 1440, FOLD_PX)
        main = page.get_by_test_id("stMain")
        page.goto(f"{server.url}/compare")
        wait_idle(page, "Compare", timeout_ms=RUN_TIMEOUT_MS)
        main.get_by_role("button", name="Run comparison").click()
        expect(main.get_by_text(re.compile(r"▶ running · before: sequential"))).to_be_visible(
            timeout=RUN_TIMEOUT_MS
        )
        main.get_by_role("button", name="Cancel").click()
        expect(main.get_by_text(re.compile(r"^Comparison cancelled"))).to_be_visible()
        page.wait_for_selector(IDLE, state="attached", timeout=RUN_TIMEOUT_MS)
        expect(main.get_by_test_id("stMetric")).to_have_count(0)  # nothing half-done shown
        runs = (server.data_dir / "history.jsonl").read_text().splitlines()
        modes = [json.loads(line)["mode"] for line in runs]
        assert "parallel" not in modes, modes  # it stopped during the sequential run
