"""The dashboard with Redis state (AppTest): shared cache and history, a banner while
Redis is down, the degraded-result label, and the password never on the page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bench.plumbing import free_port
from bench.redis_server import PASSWORD
from engine.records import CacheInfo
from tests.support.app_test import new_app, page_script
from tests.support.results import make_result
from ui import render


def page_text(at: AppTest) -> str:
    """Every value and label the page shows (markdown, text, captions, alerts, tables)."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "text", "warning", "error", "info", "success", "metric"):
        for element in getattr(at, kind):
            parts.append(str(getattr(element, "value", "")))
            parts.append(str(getattr(element, "label", "")))
    for frame in at.dataframe:
        parts.append(frame.value.to_csv())
    return "\n".join(parts)


def test_dashboard_on_redis_shares_state_and_never_shows_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    monkeypatch.setenv("QUORUM_CACHE_URL", redis_url)
    at = new_app(monkeypatch, tmp_path).run()
    assert not at.exception and not at.warning
    second = new_app(monkeypatch, tmp_path / "other").run()  # another session, other disk
    assert any("cached" in m.value for m in second.markdown)
    texts = [page_text(at)]
    at.switch_page(page_script("settings")).run()
    assert not at.exception
    assert any(t.value.startswith("Redis (shared by every replica): redis://***@") for t in at.text)
    texts.append(page_text(at))
    at.switch_page(page_script("history")).run()
    assert not at.exception
    texts.append(page_text(at))
    assert not (tmp_path / "data" / "history.jsonl").exists()  # the history is in Redis
    assert all(PASSWORD not in text for text in texts)


def test_redis_down_shows_a_banner_and_the_analysis_still_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QUORUM_CACHE_URL", f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    at = new_app(monkeypatch, tmp_path).run()
    assert not at.exception
    (banner,) = at.warning
    assert "Shared state (Redis) unavailable" in banner.proto.title
    assert "Connection refused" in banner.value
    assert any("fresh run" in m.value for m in at.markdown)  # the run went on, uncached
    assert PASSWORD not in page_text(at)


def test_a_degraded_result_is_labelled_as_short_lived() -> None:
    base = make_result(wall=2.414)
    degraded = replace(base, agents_participated=base.agents_total - 1)
    fresh = replace(degraded, cache=CacheInfo(hit=False, ttl_s=60.0))
    assert render.cache_label(fresh, 300) == (
        "fresh run · 2.41 s · degraded result: cached only 60 s"
    )
    hit = replace(degraded, execution_time_s=0.003, cache=CacheInfo(True, 12.2, 60.0))
    assert render.cache_label(hit, 300) == (
        "cached · 12 s old · degraded result: cached only 60 s · served in 3 ms"
    )
    whole = replace(
        base, agents_participated=base.agents_total, execution_time_s=0.003,
        cache=CacheInfo(True, 5.0, 120.0),
    )  # fmt: skip
    assert render.cache_label(whole, 300) == "cached · 5 s old · TTL 120 s · served in 3 ms"
