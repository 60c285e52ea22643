"""Hostile model text stays inert in a real browser.

The dashboard (`streamlit run app.py`) talks Ollama's protocol to the chaos server, which
answers every agent and the consolidator with valid JSON whose strings carry `<script>`,
`<img onerror>`, markdown images pointing at a loopback tracker, `[x](javascript:…)`, a very
long word and control characters. In Debian's Chromium: no dialog opens, no request
reaches the tracker, no such element exists in the DOM, the text shows as typed, and the
page does not overflow sideways. The screenshot is saved for a human to look at.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.run.agents import DEFAULT_ROSTER
from tests.support.browser import RUN_TIMEOUT_MS, assert_no_errors, save_screenshot, wait_idle
from tests.support.chaos_server import ChaosServer, agent_answer
from tests.support.dashboard import dashboard
from tests.support.serving import ServedInThread

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LONG_WORD = "W" * 3000
SPECIALISTS = tuple(spec.name for spec in DEFAULT_ROSTER.specialists)


class Tracker(ServedInThread):
    """A loopback HTTP server that only counts the requests that reach it."""

    thread_name = "tracker-http"

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def bind(self) -> ThreadingHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def hostile_strings(tracker: str) -> dict[str, str]:
    return {
        "script": "<script>alert('xss-script')</script>",
        "img": f'<img src=x onerror="alert(\'xss-img\')"><img src="{tracker}/raw-img">',
        "md_image": f"![pixel]({tracker}/md-image.png) and ![ref][t]\n\n[t]: {tracker}/ref-image",
        "js_link": "[click me](javascript:alert('xss-link')) <a href=\"javascript:alert(1)\">a</a>",
        "long": LONG_WORD,
        "control": "bell\x07 esc\x1b[31mred\x1b[0m nul\x00 rtl\u202eevil\u202c cr\rreturn",
    }


def hostile_answer(agent: str, tracker: str) -> str:
    bad = hostile_strings(tracker)
    answer = agent_answer(agent)
    if agent == "Consolidator":  # a compact verdict: ids to rank, and a summary line
        answer["insights"] = [[bad["script"], "P1"], [bad["js_link"]], ["I1", "S1", "C1", "R1"]]
        answer["summary"] = bad["control"] + bad["script"] + bad["md_image"]
        return json.dumps(answer)
    item = answer["findings"][0]
    item["title"] = f"{bad['script']} {bad['js_link']}"
    item["observation"] = f"{bad['img']} {bad['md_image']} {bad['long']}"
    item["recommendations"] = [bad["js_link"], bad["control"], bad["md_image"]]
    item["metrics"] = ["cpu_util_pct", bad["script"]]
    answer["summary"] = bad["control"] + bad["script"]
    return json.dumps(answer)


def test_hostile_model_text_renders_as_plain_text(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with Tracker() as tracker:
        answers = {a: hostile_answer(a, tracker.url) for a in (*SPECIALISTS, "Consolidator")}
        with (
            ChaosServer(answers=answers) as llm,
            dashboard(tmp_path, {"QUORUM_BACKEND": "ollama", "OLLAMA_HOST": llm.url}) as server,
        ):
            dialogs: list[str] = []
            errors: list[str] = []

            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            wait_idle(page, "Live insights", timeout_ms=RUN_TIMEOUT_MS)
            main = page.get_by_test_id("stMain")
            badges = main.locator(".stMarkdownBadge")
            expect(badges.filter(has_text="5/5 agents").first).to_be_visible(timeout=RUN_TIMEOUT_MS)

            # The hostile text is on the page, as the characters the model wrote (give or
            # take the invisible word joiners that keep bare URLs from becoming links).
            expect(main.get_by_text("<script>alert('xss-script')</script>").first).to_be_visible()
            shown = main.inner_text().replace("\u2060", "")
            for words in (
                "[click me](javascript:alert('xss-link'))",
                f"![pixel]({tracker.url}/md-image.png)",
                f'<img src="{tracker.url}/raw-img">',
                LONG_WORD[:100],
            ):
                assert words in shown, words
            # …and none of it became markup.
            dom = main.evaluate(
                """m => ({
                    scripts: [...m.querySelectorAll('script')].length,
                    trackerImgs: [...document.querySelectorAll('img')]
                        .filter(i => i.src.includes('127.0.0.1') && !i.src.startsWith(location.origin)).length,
                    onerror: document.querySelectorAll('[onerror]').length,
                    jsLinks: [...document.querySelectorAll('a')]
                        .filter(a => a.href.trim().toLowerCase().startsWith('javascript:')).length,
                    // bare URLs in model text must not become links either
                    outsideLinks: [...m.querySelectorAll("a")]
                        .filter(a => !a.href.startsWith(location.origin)).length,
                    overflow: document.documentElement.scrollWidth - window.innerWidth,
                    mainOverflow: m.scrollWidth - m.clientWidth,
                })"""
            )
            assert dom == {
                "scripts": 0,
                "trackerImgs": 0,
                "onerror": 0,
                "jsLinks": 0,
                "outsideLinks": 0,
                "overflow": 0,
                "mainOverflow": 0,
            }, dom
            # Control characters are dropped, not rendered as raw escapes.
            text = main.inner_text()
            assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text
            assert_no_errors(page, errors)
            shot = save_screenshot(page, "hostile-text.png")
            assert shot.stat().st_size > 0
            assert dialogs == [], dialogs
            assert tracker.hits == [], f"the page fetched from the tracker: {tracker.hits}"
            assert "Traceback" not in server.log(), server.log()
