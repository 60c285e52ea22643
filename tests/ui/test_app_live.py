"""The Live insights page, end to end on the simulated backend (AppTest, no browser)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from engine.run.runner import ProgressEvent
from engine.sources.snapshot import SCENARIOS, SnapshotError
from tests.support.app_test import TIMEOUT_S, new_app, uploader
from ui import live_session, render, safe, sources


def badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def cache_badge(at: AppTest) -> str:
    (label,) = [b for b in badges(at) if "cached ·" in b or "fresh run ·" in b]
    return label


def test_sidebar_offers_backend_snapshot_and_engine_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="backend_choice").value == "simulated"
    assert at.sidebar.selectbox(key="sim_profile").value == "baseline"
    assert at.sidebar.slider(key="sim_slots").value == 4  # Ollama's default where it fits
    assert at.sidebar.number_input(key="sim_time_scale").value == pytest.approx(0.01)
    assert at.sidebar.selectbox(key="scenario_name").value == "cpu-saturation"
    for key in ("run_quorum",):
        assert at.sidebar.slider(key=key).value == 3
    for key in ("run_grace", "run_timeout", "cache_ttl"):
        assert (at.sidebar.number_input(key=key).value or 0) > 0
    assert at.sidebar.toggle(key="cache_on").value is True
    status = " ".join(c.value for c in at.sidebar.caption)
    assert "reachable" in status and "simulated" in status  # the server's own status


def test_a_run_shows_tiles_tier_insights_progress_and_the_simulated_label(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    assert not at.exception
    # USE tiles from the snapshot fields
    labels = [m.label for m in at.metric]
    assert "U · CPU utilisation" in labels and "S · Run queue per core" in labels
    cpu = next(m for m in at.metric if m.label == "U · CPU utilisation")
    assert cpu.value == f"{SCENARIOS['cpu-saturation']['cpu_util_pct']:.0f} %"
    # the tier badge and agents
    assert any("excellent 95" in b for b in badges(at))
    assert any("5/5 agents" in b for b in badges(at))
    # insight cards (the simulated answers follow the USE rules for cpu-saturation)
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert "**CPU utilisation is high**" in titles
    # live progress was drawn, one line per agent, in an st.status
    (status,) = at.status
    assert status.label.startswith("Analysis finished")
    # the simulator's time is labelled with what it stands for at real speed
    assert "at real speed; simulator at 0.01×)" in status.label
    lines = [line for t in at.text for line in t.value.split("\n")]
    assert any(line.startswith("PerformanceAnalyst: ok") for line in lines)
    assert any(line.startswith("Consolidator: ok") for line in lines)
    assert any(render.SIMULATED_LABEL in i.value for i in at.info)
    assert cache_badge(at).split(":material/timer: ")[1].startswith("fresh run · ")
    assert at.get("plotly_chart"), "the waterfall is drawn"


def test_a_second_run_of_the_same_snapshot_is_served_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    assert "fresh run ·" in cache_badge(at)
    at.run()  # an auto-refresh tick re-reads the (unchanged) snapshot
    assert not at.exception
    label = cache_badge(at)
    assert "cached · " in label and " s old · TTL 300 s · served in " in label
    assert not at.status, "a cache hit runs no agents, so no progress box"
    assert any(c.value.startswith("Timings of the original run") for c in at.caption)
    # and "Run now" bypasses the cache
    at.button(key="live_run_now").click().run()
    assert "fresh run ·" in cache_badge(at)


def test_a_page_run_without_app_py_reruns_through_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Without the fix-up AppTest starts every run in pages-directory mode, as a fresh
    # server does when its first request opens a sub-page: app.py must still draw the
    # sidebar and the navigation.
    at = new_app(monkeypatch, tmp_path, server_like_navigation=False).run()
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    assert at.sidebar.selectbox(key="backend_choice").value == "simulated"
    assert any(m.value == "#### Agent roster" for m in at.markdown)
    # The run that finished was app.py's: its st.navigation titles, not file names.
    # (AppTest has no public view of the navigation; this is its registry.)
    titles = {str(p.get("page_name")) for p in at._registered_pages.values()}
    assert titles == {"Live insights", "Compare", "History", "Settings"}


def test_pause_and_interval_controls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    assert at.toggle(key="live_paused").value is False
    assert at.select_slider(key="live_interval").value == 30
    at.toggle(key="live_paused").set_value(True).run()
    assert not at.exception
    assert any("auto-refresh paused" in c.value for c in at.caption)


def test_cache_off_always_runs_fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.toggle(key="cache_on").set_value(False).run()
    at.run()
    assert "fresh run ·" in cache_badge(at) and "cache off" in cache_badge(at)


def test_the_live_host_is_sampled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.segmented_control(key="source_kind").set_value("live").run()
    assert not at.exception
    assert any(safe.md("source live") in c.value for c in at.caption)
    assert len([m for m in at.metric if m.label.startswith(("U · ", "S · ", "E · "))]) == 12
    assert any("/5 agents" in b for b in badges(at))


def test_a_bad_upload_shows_the_field_level_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.segmented_control(key="source_kind").set_value("upload").run()
    assert not at.exception
    bad = {**SCENARIOS["healthy"], "cpu_util_pct": 140}
    uploader(at).set_value(("bad.json", json.dumps(bad).encode(), "application/json")).run()
    assert not at.exception  # no traceback…
    messages = [e.value for e in at.error]
    # …but the field and the problem, in the sidebar and on the page
    shown = [m for m in messages if safe.md("cpu_util_pct") in m]
    assert len(shown) == 2, messages  # in the sidebar and on the page
    assert all(safe.md("must be ≤ 100, got 140") in m for m in shown)
    assert not at.status  # nothing was analysed


def test_a_good_upload_is_analysed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.segmented_control(key="source_kind").set_value("upload").run()
    good = {**SCENARIOS["memory-leak"], "host": "db-1"}
    uploader(at).set_value(("db.json", json.dumps(good).encode(), "application/json")).run()
    assert not at.exception and not at.error
    leak = safe.md("Memory leak: memory growth, swapping and OOM kills")
    assert any(leak in m.value for m in at.markdown)


def test_an_unreachable_ollama_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path, backend="ollama").run()
    assert not at.exception
    assert any("Server unreachable" in e.value for e in at.sidebar.error)
    # The run itself degrades: no agent answered, the deterministic checks still speak.
    assert any("No agent answered" in (e.proto.title or "") for e in at.main.error)
    assert any("fallback 60" in b for b in badges(at))


def test_the_openai_key_is_used_but_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path, backend="openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-1234")
    at.run()
    assert not at.exception
    assert any(c.value == "API key: set (from OPENAI_API_KEY)" for c in at.sidebar.caption)
    assert any(safe.md("Server URL: required") in w.value for w in at.main.warning)  # no URL yet
    at.sidebar.text_input(key="openai_url").input("http://127.0.0.1:9/v1").run()
    assert not at.exception
    assert any("fallback 60" in b for b in badges(at))  # nobody answered, nothing crashed
    shown = [
        str(getattr(el, "value", "")) + str(getattr(el, "label", ""))
        for kind in ("markdown", "caption", "text", "error", "warning", "info", "text_input")
        for el in at.get(kind)
    ]
    assert shown and not any("SECRET" in item for item in shown)


def test_auto_falls_back_to_the_simulated_server_without_ollama(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path, backend="auto").run()
    assert not at.exception
    assert any("No Ollama at" in c.value for c in at.sidebar.caption)
    assert any(render.SIMULATED_LABEL in i.value for i in at.info)


# --- the upload helper itself -------------------------------------------------------------


def test_parse_upload_names_the_bad_field() -> None:
    with pytest.raises(SnapshotError) as bad_value:
        sources.parse_upload(json.dumps({**SCENARIOS["healthy"], "mem_util_pct": -1}).encode(), "x")
    assert bad_value.value.field == "mem_util_pct"
    with pytest.raises(SnapshotError) as not_json:
        sources.parse_upload(b"{not json", "x")
    assert not_json.value.field == "file" and "line 1" in not_json.value.message
    with pytest.raises(SnapshotError) as missing:
        sources.parse_upload(b"{}", "x")
    assert missing.value.field == "cpu_util_pct"
    with pytest.raises(SnapshotError) as huge:
        sources.parse_upload(b" " * (sources.MAX_UPLOAD_BYTES + 1), "x")
    assert "too large" in huge.value.message


def test_parse_upload_accepts_a_valid_snapshot() -> None:
    snap = sources.parse_upload(json.dumps(SCENARIOS["disk-io-bound"]).encode(), "disk.json")
    assert snap.disk_util_pct == 99 and snap.source == "upload:disk.json"


def test_cache_label_formats() -> None:
    from dataclasses import replace

    from engine.records import CacheInfo
    from tests.support.results import make_result

    fresh = make_result(wall=2.414)
    assert render.cache_label(fresh, 300) == "fresh run · 2.41 s"
    hit = replace(make_result(wall=0.003), cache=CacheInfo(hit=True, age_s=42.4))
    assert render.cache_label(hit, 300) == "cached · 42 s old · TTL 300 s · served in 3 ms"


# --- the progress callback ----------------------------------------------------------------


class _Stop(BaseException):
    """Stands in for Streamlit's stop/rerun signal, which st.* calls raise."""


class _RaisingSlot:
    calls = 0

    def status(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise _Stop


def test_progress_lets_one_stop_through_then_stays_quiet() -> None:
    slot = _RaisingSlot()
    progress = render.LiveProgress(slot)
    with pytest.raises(_Stop):
        progress(ProgressEvent("A", "tokens", 1.0, tokens=3))
    # the cancelled agents' "finished" events must not raise again
    progress(ProgressEvent("B", "finished", 1.1, status="cancelled"))
    progress.close(None)
    assert progress.interrupted and slot.calls == 1


def test_progress_from_another_thread_is_counted_not_drawn() -> None:
    slot = _RaisingSlot()
    progress = render.LiveProgress(slot)
    worker = threading.Thread(target=progress, args=(ProgressEvent("A", "started", 0.0),))
    worker.start()
    worker.join()
    assert progress.off_thread_events == 1 and slot.calls == 0


def test_progress_draws_one_line_per_agent_in_a_status_box() -> None:
    def script() -> None:
        import streamlit as st

        from engine.run.runner import ProgressEvent
        from ui import render

        progress = render.LiveProgress(
            st.container(), agents=["A", "B", "C"], consolidator="Consolidator", min_redraw_s=0.0
        )
        progress(ProgressEvent("A", "queued", 0.0))
        progress(ProgressEvent("B", "queued", 0.0))
        progress(ProgressEvent("C", "queued", 0.0))
        progress(ProgressEvent("A", "started", 0.0))
        progress(ProgressEvent("B", "started", 0.01))
        progress(ProgressEvent("A", "tokens", 0.5, tokens=42))
        progress(ProgressEvent("A", "finished", 0.9, status="ok"))

    at = AppTest.from_function(script, default_timeout=TIMEOUT_S).run()
    (status,) = at.status
    # "queued" is not "done"; the consolidation is counted apart from the agents
    assert status.label == (
        "Analysing… agents 1/3 done, 1 running, 1 waiting for a slot · "
        "consolidation after the agents"
    )
    (text,) = at.text  # one element: nothing of an earlier run can linger beside it
    assert text.value.split("\n") == [
        "A: ok · 42 tokens · ended at 0.90 s",
        "B: running since 0.01 s · 0 tokens",
        "C: waiting for a free server slot",
        "Consolidator: next",
    ]


def test_run_progress_counts_each_run_apart_and_labels_simulated_time() -> None:
    first = render.RunProgress(["A", "B"], "Consolidator", scale=0.1)
    for name in ("A", "B", "Consolidator"):
        first.apply(ProgressEvent(name, "started", 0.0))
        first.apply(ProgressEvent(name, "finished", 1.88, status="ok"))
    assert first.counts()["done"] == 2  # the consolidation is not an agent
    assert first.label() == "agents 2/2 done, 0 running · consolidation done"
    assert first.line(first.steps["A"]).endswith(
        "ended at 1.88 s (≈ 18.8 s at real speed; simulator at 0.1×)"
    )
    second = render.RunProgress(["A", "B"], "Consolidator")
    assert second.counts() == {"next": 2, "queued": 0, "running": 0, "done": 0}


def test_a_fall_reads_as_a_fall_on_the_tile() -> None:
    def script() -> None:
        import streamlit as st

        from engine.sources.snapshot import FIELD_BY_NAME
        from ui import render

        spec = FIELD_BY_NAME["cpu_util_pct"]
        st.metric("down", "28 %", delta=render.format_delta(spec, 28.0, 46.0))
        st.metric("up", "46 %", delta=render.format_delta(spec, 46.0, 28.0))

    at = AppTest.from_function(script, default_timeout=TIMEOUT_S).run()
    down, up = at.metric
    # Streamlit takes the arrow's direction from the delta text's sign
    assert (down.proto.direction, up.proto.direction) == (
        down.proto.MetricDirection.DOWN,
        up.proto.MetricDirection.UP,
    )
    assert (down.delta, up.delta) == ("-18 %", "+18 %")


def test_engine_settings_sit_in_a_collapsed_advanced_expander_marked_when_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    (advanced,) = [e for e in at.sidebar.expander if e.label.startswith("Advanced")]
    assert advanced.label == "Advanced"
    assert advanced.proto.expanded is False
    at.sidebar.number_input(key="run_timeout").set_value(12.0).run()
    (advanced,) = [e for e in at.sidebar.expander if e.label.startswith("Advanced")]
    assert advanced.label == "Advanced · 1 changed"
    assert any("Per-agent timeout (s)" in c.value for c in advanced.caption)


def test_a_quiet_host_gets_one_all_clear_card(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    at.sidebar.selectbox(key="scenario_name").set_value("healthy").run()
    assert not at.exception
    cards = [m.value for m in at.markdown if "All clear (" in m.value]
    assert len(cards) == 1 and re.search(r"All clear \(\d+ checks\)", cards[0])
    assert not [m.value for m in at.markdown if "issue found" in m.value]


def test_a_refresh_shorter_than_the_last_run_is_stretched_and_says_why() -> None:
    assert live_session.stretch_interval(15, 14.2) == (15, None)  # longer than the run: kept
    interval, why = live_session.stretch_interval(10, 14.2)  # the 10 s against 14 s
    assert interval == 30 and why is not None  # the first option ≥ 1.5 × 14.2 s
    assert "Refresh every 10 s is shorter than the last analysis (14.2 s" in why
    assert "stretched to 30 s" in why
    assert live_session.stretch_interval(1, 1.05)[0] == 2
    assert live_session.stretch_interval(300, 400.0)[0] == 601  # beyond the options: 1.5× the run
    assert live_session.stretch_interval(5, None) == (5, None)  # nothing measured yet
