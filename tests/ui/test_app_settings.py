"""The Settings page: roster, cache statistics and clearing, where files live."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.run.agents import DEFAULT_ROSTER
from tests.support.app_test import new_app, page_script


def test_settings_show_the_roster_cache_stats_and_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path).run()  # one analysis, so one cache entry
    at.switch_page(page_script("settings")).run()
    assert not at.exception

    roster, files = at.dataframe[0].value, at.dataframe[1].value
    names = [a.name for a in (*DEFAULT_ROSTER.specialists, DEFAULT_ROSTER.consolidator)]
    assert list(roster["name"])[:6] == names
    assert roster["prompt"].iloc[0] == DEFAULT_ROSTER.specialists[0].system_prompt
    assert roster["instructions"].iloc[0] == DEFAULT_ROSTER.specialists[0].instructions
    assert list(roster["max tokens"])[5] == DEFAULT_ROSTER.consolidator.max_tokens
    assert any("Default roster" in c.value for c in at.caption)

    stats = {m.label: m.value for m in at.metric}
    assert stats["Entries"] == "1"
    assert stats["Hits"] == "0" and stats["Misses"] != "0"
    assert stats["TTL"] == "300 s"
    data = tmp_path / "data"
    assert any(t.value == f"Directory: {data / 'cache'}" for t in at.text)
    assert str(data / "history.jsonl") in list(files["path"])

    at.button(key="cache_clear").click().run()
    assert any("Cleared 1 cached result" in s.value for s in at.success)
    assert {m.label: m.value for m in at.metric}["Entries"] == "0"


def test_a_roster_file_overrides_models_and_a_bad_one_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path)
    roster = tmp_path / "no-roster.toml"  # the path new_app points QUORUM_CONFIG at
    roster.write_text('[agents.CostOptimizer]\nmodel = "qwen2.5:3b"\n')
    at.run()
    at.switch_page(page_script("settings")).run()
    table = at.dataframe[0].value
    assert table.set_index("name").loc["CostOptimizer", "model"] == "qwen2.5:3b"
    assert any("Loaded from" in c.value for c in at.caption)

    roster.write_text("[agents.Nobody]\nmodel = 1\n")
    at.run()
    assert not at.exception
    (error,) = at.error
    assert "unknown agent" in error.value
    assert "using the default roster" in (error.proto.title or "")
