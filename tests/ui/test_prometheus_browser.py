"""The dashboard's Prometheus source in a real browser: Debian's Chromium, `streamlit run
app.py`, a real Prometheus scraping a real node_exporter and a service (tests/support/prometheus_stack.py),
the simulated LLM backend.

The sidebar's URL comes pre-filled with credentials in it (as a user might paste it);
they must be moved out of the text box and appear nowhere on the page, in the server's
log or in the history. No sleeps: every wait is a Playwright condition with a timeout,
a health endpoint, or a Prometheus query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.browser import (
    RUN_TIMEOUT_MS,
    TIME_SCALE,
    assert_no_errors,
    save_screenshot,
    wait_idle,
)
from tests.support.dashboard import Server, simulated_env
from tests.support.dashboard import dashboard as launch
from tests.support.prometheus_stack import PromStack

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus]

SECRET = "hunter2-e2e"


@pytest.fixture
def dashboard(promstack: PromStack, tmp_path: Path) -> Iterator[Server]:
    """The dashboard with the Prometheus URL (user:password inside) pre-filled."""
    env = {
        **simulated_env(TIME_SCALE),
        "QUORUM_CONFIG": str(tmp_path / "no-quorum.toml"),
        "QUORUM_PROMETHEUS_URL": promstack.url.replace("http://", f"http://ops:{SECRET}@"),
    }
    with launch(tmp_path, env, drop=("QUORUM_PROMETHEUS_TOKEN",)) as srv:
        yield srv


def test_prometheus_source_in_a_real_browser(
    page: Page, promstack: PromStack, dashboard: Server
) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    main = page.get_by_test_id("stMain")
    sidebar = page.get_by_test_id("stSidebar")
    # Some traffic, so the service fields have a histogram to come from.
    with httpx.Client(base_url=promstack.service.url, timeout=5) as client:
        for i in range(40):
            client.get("/work", params={"ms": 30 if i < 30 else 300, "code": 200})
    promstack.wait_for(
        "the requests scraped", lambda: promstack.scalar("sum(http_requests_total)") == 40.0
    )

    page.goto(dashboard.url)
    wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
    sidebar.get_by_role("radio", name="Prometheus", exact=True).click()

    # The sidebar: the URL without its credentials, the picker filled from the targets.
    url_box = sidebar.get_by_role("textbox", name="Prometheus URL")
    expect(url_box).to_have_value(promstack.url)
    expect(
        sidebar.get_by_text("Credentials: user and password from the URL (hidden)")
    ).to_be_visible()
    picker = sidebar.get_by_role("combobox", name="Instance")
    expect(picker).to_have_value(f"{promstack.node_instance} (node, node_exporter, up)")

    # The analysis of the Prometheus snapshot runs.
    expect(main.get_by_text(f"Snapshot: Prometheus {promstack.node_instance}")).to_be_visible()
    fetch = main.get_by_text(
        re.compile(rf"^Prometheus {re.escape(promstack.node_instance)} \(node\) · last fetch")
    )
    expect(fetch).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # The caption is drawn by the new run, before its analysis: wait for that run to end,
    # so what follows is not left over from the scenario analysed on page load.
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state=notRunning]", state="attached"
    )
    expect(
        main.get_by_text(f"source prometheus:{promstack.node_instance}", exact=False)
    ).to_be_visible()
    expect(main.get_by_text(re.compile(r"^Analysis finished in"))).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    expect(main.get_by_text("First snapshot from this source in this session.")).to_be_visible()
    expect(main.locator(".stMarkdownBadge").filter(has_text="5/5 agents").first).to_be_visible()
    expect(main.get_by_test_id("stMetric").filter(has_text="p95 latency")).to_be_visible()
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state=notRunning]", state="attached"
    )
    assert_no_errors(page, errors)
    save_screenshot(page, "prometheus.png")

    # Auto-refresh at its shortest interval re-reads Prometheus (the slider's own rerun
    # reads once too): the page then says what changed since the last snapshot, or that
    # nothing did and the cache answered.
    first_fetch = fetch.inner_text()
    slider = main.get_by_role("slider")
    slider.focus()
    page.keyboard.press("Home")
    # 1 s, or stretched to 1.5× the last run's wall time (ui/live_session.py), saying so
    expect(main.get_by_text(re.compile(r"re-read every \d+ s"))).to_be_visible()
    if not main.get_by_text(re.compile(r"re-read every 1 s")).count():
        expect(main.get_by_text(re.compile(r"^Refresh every 1 s is shorter"))).to_be_visible()
    changed = main.get_by_text(
        re.compile(r"^(Changed since the last snapshot: |Unchanged since the last snapshot)")
    )
    expect(changed).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(fetch).not_to_have_text(first_fetch)
    badge = main.locator(".stMarkdownBadge").filter(has_text=re.compile(r"\b(cached|fresh run) ·"))
    expect(badge).to_have_count(1)
    if changed.inner_text().startswith("Unchanged"):
        expect(badge).to_have_text(re.compile(r"\bcached ·"))
    else:
        expect(badge).to_have_text(re.compile(r"\bfresh run ·"))
    # And again with no click at all: the 1 s timer alone re-reads Prometheus.
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state=notRunning]", state="attached"
    )
    expect(fetch).not_to_have_text(fetch.inner_text(), timeout=RUN_TIMEOUT_MS)
    expect(changed).to_be_visible(timeout=RUN_TIMEOUT_MS)
    assert_no_errors(page, errors)
    main.get_by_text("Pause auto-refresh").click()  # a still page to save
    expect(main.get_by_text(re.compile(r"auto-refresh paused"))).to_be_visible()
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state=notRunning]", state="attached"
    )
    save_screenshot(page, "prometheus-refreshed.png")

    # The credentials are nowhere to be seen.
    assert SECRET not in page.content()
    assert SECRET not in dashboard.log()
    history = dashboard.data_dir / "history.jsonl"
    assert history.exists() and SECRET not in history.read_text()
    assert "Traceback" not in dashboard.log(), dashboard.log()
