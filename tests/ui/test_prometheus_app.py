"""The dashboard's Prometheus source without a browser (AppTest): bad URL, unreachable
server, credentials moved out of the URL box, and "what changed" between snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.sources import prometheus as prom
from engine.sources.changes import changes
from engine.sources.snapshot import scenario
from tests.support.app_test import new_app
from tests.support.loopback import LoopbackServer
from ui import safe

SECRET = "pa55-app"


def prometheus_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> AppTest:
    monkeypatch.setenv("QUORUM_PROMETHEUS_URL", url)
    monkeypatch.delenv(prom.TOKEN_ENV, raising=False)
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.segmented_control(key="source_kind").set_value("prometheus").run()
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.error, *at.warning, *at.caption, *at.markdown)]
    parts += [w.value for w in at.text_input]
    return "\n".join(str(p) for p in parts)


def test_unreachable_prometheus_is_one_line_in_sidebar_and_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with LoopbackServer({}) as server:
        dead = server.url  # closed when the block ends: nothing listens there any more
    at = prometheus_app(monkeypatch, tmp_path, dead.replace("http://", f"http://ops:{SECRET}@"))
    assert not at.exception
    messages = [e.value for e in at.error]
    reach = safe.md(f"cannot reach {dead}")
    assert any(reach in m for m in messages), messages  # the sidebar
    assert any(safe.md("prometheus") in m and reach in m for m in messages[1:]), messages  # page
    assert not at.status  # nothing was analysed
    # The URL box lost its credentials; they are nowhere on the page.
    assert at.sidebar.text_input(key="prom_url").value == dead
    assert SECRET not in texts(at)
    hidden = safe.md("Credentials: user and password from the URL (hidden)")
    assert any(hidden == c.value for c in at.sidebar.caption)


def test_a_bad_url_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = prometheus_app(monkeypatch, tmp_path, "ftp://prom")
    assert not at.exception
    assert any(safe.md("prometheus: URL must be http(s)://host") in e.value for e in at.error)


def test_a_token_is_named_by_where_it_came_from_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with LoopbackServer({}) as server:
        dead = server.url
    monkeypatch.setenv("QUORUM_PROMETHEUS_URL", dead)
    monkeypatch.setenv(prom.TOKEN_ENV, "tok-" + SECRET)
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.segmented_control(key="source_kind").set_value("prometheus").run()
    expected = safe.md(f"Credentials: bearer token from {prom.TOKEN_ENV}")
    assert any(expected == c.value for c in at.sidebar.caption)
    assert SECRET not in texts(at)


def test_changes_list_fields_that_moved_after_quantisation() -> None:
    before = scenario("healthy")
    same = prom.build_snapshot(
        {**before.to_dict(), "cpu_util_pct": 23.3},  # 23.3 quantises to 23, as 23 does
        prom.Target("h:9100", "node", "up"),
        cores=8,
        host="h",
    )
    assert changes(before, same) == []
    after = prom.build_snapshot(
        {**before.to_dict(), "cpu_util_pct": 61.0, "disk_util_pct": None},
        prom.Target("h:9100", "node", "up"),
        cores=8,
        host="h",
    )
    moved = [(c.spec.name, c.before, c.after) for c in changes(before, after)]
    assert moved == [("cpu_util_pct", 23.0, 61.0), ("disk_util_pct", 12.0, None)]
    assert changes(before, after)[0].to_dict() == {
        "field": "cpu_util_pct",
        "before": 23.0,
        "after": 61.0,
    }
