"""The History page: every run listed, a trend, any past run's details, downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.app_test import new_app, page_script


def test_empty_history_says_how_to_fill_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = new_app(monkeypatch, tmp_path).run()
    (tmp_path / "data" / "history.jsonl").unlink()  # forget the live page's first run
    at.switch_page(page_script("history")).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
    assert not at.get("download_button")


def test_history_lists_runs_and_offers_downloads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()  # a fresh run…
    at.run()  # …and a cache hit
    at.switch_page(page_script("history")).run()
    assert not at.exception

    table = at.dataframe[0].value
    assert len(table) == 2
    assert list(table["cache_hit"]) == [True, False]  # newest first
    assert {"time", "snapshot_key", "mode", "backend", "execution_time_s", "tier"} <= set(
        table.columns
    )
    assert set(table["backend"]) == {"simulated"}

    downloads = {getattr(d, "label", None) for d in at.get("download_button")}
    assert downloads == {"Download JSON", "Download CSV"}
    assert "history_trend" in {el.key for el in at.get("plotly_chart")}

    # any past run can be opened: its tier, insights and waterfall
    assert at.selectbox(key="history_run").options[1].endswith("excellent")
    at.selectbox(key="history_run").set_value(1).run()
    assert not at.exception
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert any("excellent 95" in b for b in badges)
    assert any("fresh run ·" in b for b in badges)
    assert "history_waterfall" in {el.key for el in at.get("plotly_chart")}
    assert any(m.value == "**CPU utilisation is high**" for m in at.markdown)
