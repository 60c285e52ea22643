"""Soak: the Live page refreshing every second, for minutes, against an LLM server that
restarts, hangs and recovers.

The dashboard (`streamlit run app.py`, Debian's Chromium) talks OpenAI's protocol to the
chaos server, with the result cache off (so every refresh asks the server) and a 1 s agent
timeout. The server cycles: healthy → every agent hangs → stopped (connection refused) →
restarted on the same port → healthy ... A MutationObserver in the page records the end of
every script run (no run can slip between two polls); for each one the page must show a
result or a clear banner, and never an exception. The dashboard process's memory (RSS) is
sampled at every refresh and must stay flat.

A second tab watches the same Live page with the same settings, as a second user (or a
session the browser reconnected while its old one still ran) would: its runs ask the same
analysis at the same time, and the engine's single-flight serves one run to both. Each
watched run must end with its status box saying how it ended ("Analysis finished…",
"Analysis failed", "Analysis interrupted…"), never still "Analysing…" and never silent
(issue 18: 3 of 494 refreshes did; the Live page's re-arming rerun, right after the
analysis, discarded the box's last word before Streamlit sent it). No run is excused.

Duration: $QUORUM_SOAK_S seconds (CI: 60; the bench: 600).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from bench.plumbing import free_port
from engine.run.agents import DEFAULT_ROSTER
from tests.support.browser import RUN_TIMEOUT_MS, wait_idle
from tests.support.chaos_server import ChaosServer
from tests.support.dashboard import dashboard

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.soak, pytest.mark.e2e]

DURATION_S = float(os.environ.get("QUORUM_SOAK_S", "60"))
AGENTS = [*(s.name for s in DEFAULT_ROSTER.specialists), DEFAULT_ROSTER.consolidator.name]
# healthy, then hanging, then down: one cycle per 30 s of soak (at least two in CI)
PHASES: tuple[tuple[str, float], ...] = (("healthy", 12.0), ("hang", 8.0), ("down", 6.0))
# Growth allowed between the second and the last third of the run (warm-up excluded).
MAX_GROWTH_MB = 40.0

WATCH_RUNS_JS = r"""() => {
    window.__runs = [];
    const app = document.querySelector('[data-testid=stApp]');
    let started = Date.now();
    new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') !== 'notRunning') {
            started = Date.now();
            return;
        }
        const main = document.querySelector('[data-testid=stMain]');
        const text = main ? main.innerText : '';
        window.__runs.push({
            t: Date.now(),
            took_ms: Date.now() - started,
            state: app.getAttribute('data-test-script-state'),
            text: text.replace(/\s+/g, ' ').slice(0, 400),
            badges: [...document.querySelectorAll('[data-testid=stMain] .stMarkdownBadge')]
                .map(b => b.innerText),
            // a result on the page: its header's "n/5 agents" badge
            result: [...document.querySelectorAll('[data-testid=stMain] .stMarkdownBadge')]
                .some(b => /\b\d+\/\d+ agents$/.test(b.innerText.trim())),
            exceptions: document.querySelectorAll('[data-testid=stException]').length
                + (text.includes('Traceback') ? 1 : 0),
            finished: /Analysis finished in/.test(text),
            // the status box's last word: how the run ended (or "Analysing…", still going)
            ended: /Analysis (finished in|failed|interrupted)/.test(text),
            analysing: /Analysing…/.test(text),
            status: (text.match(/Analys(is|ing)[^\n]{0,90}/g) || []).join(' | '),
            banners: [...document.querySelectorAll('[data-testid=stMain] [data-testid=stAlert]')]
                .map(a => a.innerText.replace(/\s+/g, ' ').slice(0, 160)),
        });
        // One frame later: still idle, or already the next run? (for the report only: a
        // run that ends saying "Analysing…" fails, whatever follows it)
        const rec = window.__runs[window.__runs.length - 1];
        requestAnimationFrame(() => setTimeout(() => {
            const now = document.querySelector('[data-testid=stMain]');
            rec.next_state = app.getAttribute('data-test-script-state');
            rec.next_frame = ((now ? now.innerText : '').match(/Analys(is|ing)[^\n]{0,90}/g)
                || []).join(' | ');
        }, 0));
    }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


@dataclass
class Soak:
    runs: list[dict[str, Any]] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    phases_seen: list[str] = field(default_factory=list)


class FlakyServer:
    """The chaos server on one fixed port, put through the phases on request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ChaosServer | None = None
        self.phase = ""
        self.restarts = 0

    def enter(self, phase: str) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        if phase == "down":
            self.stop()
            return
        if self.server is None:
            self.server = ChaosServer(port=self.port).__enter__()
            self.restarts += 1
        self.server.faults = dict.fromkeys(AGENTS, "hang_headers") if phase == "hang" else {}

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    server = FlakyServer()
    server.enter("healthy")
    try:
        yield server
    finally:
        server.stop()


def phase_at(elapsed_s: float) -> str:
    cycle = sum(d for _, d in PHASES)
    at = elapsed_s % cycle
    for name, duration in PHASES:
        if at < duration:
            return name
        at -= duration
    return PHASES[-1][0]


def configure(page: Page) -> None:
    """Result cache off, agent timeout 1 s, five server slots (the chaos server answers
    Ollama's /api/version, so auto would assume Ollama's default of one), refresh every
    1 s — as a user would set them."""
    sidebar = page.get_by_test_id("stSidebar")
    slots = sidebar.get_by_role("textbox", name="Server slots")
    slots.fill("5")
    slots.press("Enter")
    wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
    sidebar.get_by_test_id("stExpander").filter(has_text="Advanced").locator("summary").click()
    sidebar.get_by_text("Result cache").click()
    wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
    timeout = sidebar.get_by_label("Per-agent timeout (s)")
    timeout.fill("1")
    timeout.press("Enter")
    wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
    slider = page.get_by_test_id("stMain").get_by_role("slider").first
    slider.focus()
    slider.press("Home")  # the first option: 1 s
    wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)


def test_dashboard_survives_a_server_that_restarts_hangs_and_recovers(
    page: Page, tmp_path: Path, flaky: FlakyServer
) -> None:
    env = {"QUORUM_BACKEND": "openai", "OPENAI_BASE_URL": flaky.url + "/v1"}
    with dashboard(tmp_path, env) as server:
        process = psutil.Process(server.pid)
        page.goto(server.url)
        wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
        configure(page)
        page.get_by_test_id("stMain").get_by_text("re-read every 1 s").wait_for()
        other = page.context.new_page()  # the second tab (see the module's docstring)
        other.goto(server.url)
        wait_idle(other, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
        configure(other)
        page.evaluate(WATCH_RUNS_JS)

        soak = Soak()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < DURATION_S:
            phase = phase_at(elapsed)
            flaky.enter(phase)
            if phase not in soak.phases_seen:
                soak.phases_seen.append(phase)
            # The next run's end, as the page itself recorded it (refreshes come every 1 s;
            # a hung run ends at its 1 s agent timeout).
            seen = len(soak.runs)
            page.wait_for_function(f"() => window.__runs.length > {seen}", timeout=20_000)
            soak.runs = page.evaluate("() => window.__runs")
            soak.rss_mb.append(process.memory_info().rss / 2**20)

    report(soak, flaky)
    assert set(soak.phases_seen) == {"healthy", "hang", "down"}
    assert flaky.restarts >= 2, "the server was never restarted"
    assert len(soak.runs) >= DURATION_S / 4, f"only {len(soak.runs)} refreshes"
    silent = [(i, r["took_ms"], r["status"] or "(no status box)", r.get("next_frame"), r["badges"][:6])
              for i, r in enumerate(soak.runs)
              if r["analysing"] or not (r["ended"] or any("could not run" in b for b in r["banners"]))]  # fmt: skip
    assert not silent, f"{len(silent)} runs ended without saying how: {silent[:5]}"
    for i, run in enumerate(soak.runs):
        assert run["exceptions"] == 0, f"run {i}: an exception on the page"
        assert run["result"] or run["banners"], f"run {i}: neither a result nor a banner: {run}"
    assert any(r["banners"] for r in soak.runs), "no outage was ever reported"
    assert any(r["result"] and not r["banners"] for r in soak.runs), "never a clean result"
    third = max(1, len(soak.rss_mb) // 3)
    middle = statistics.median(soak.rss_mb[third : 2 * third] or soak.rss_mb)
    last = statistics.median(soak.rss_mb[-third:])
    assert last - middle <= MAX_GROWTH_MB, (
        f"RSS grew {last - middle:.1f} MB ({middle:.0f}→{last:.0f})"
    )


def report(soak: Soak, flaky: FlakyServer) -> None:
    banners = sorted({b for r in soak.runs for b in r["banners"]})
    print(
        f"\nsoak {DURATION_S:.0f} s: {len(soak.runs)} refreshes, "
        f"{sum(1 for r in soak.runs if r['result'] and not r['banners'])} clean results, "
        f"{sum(1 for r in soak.runs if r['banners'])} with a banner, "
        f"{sum(1 for r in soak.runs if not r['finished'])} ended before their status said "
        f"'Analysis finished', "
        f"{sum(1 for r in soak.runs if 'for another page' in r['status'])} served by the other "
        f"tab's run, {sum(1 for r in soak.runs if r['analysing'])} ended saying 'Analysing…', "
        f"{flaky.restarts} server starts; RSS {min(soak.rss_mb):.0f}-{max(soak.rss_mb):.0f} MB "
        f"(first {soak.rss_mb[0]:.0f}, last {soak.rss_mb[-1]:.0f})"
    )
    for banner in banners[:8]:
        print("  banner:", banner)
    for i, run in enumerate(soak.runs):
        if not run["finished"] or "for another page" in run["status"]:
            then = f" → next frame: {run.get('next_frame')} [{run.get('next_state')}]"
            print(f"  run {i} ({run['took_ms']} ms): {run['status'] or '(no status box)'}{then}")
