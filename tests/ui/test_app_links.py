"""The two addresses other tools link to: `?run=<id>` (a run) and `?view=wall`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.store.history import History
from tests.support.app_test import new_app


def test_a_run_link_opens_that_run_in_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    new_app(monkeypatch, tmp_path).run()  # one live analysis, recorded in the history
    (first,) = History(tmp_path / "data" / "history.jsonl").load()
    assert re.fullmatch(r"[0-9a-f]{12}", first.run_id)
    at = new_app(monkeypatch, tmp_path)
    at.query_params["run"] = first.run_id
    at.run()
    assert not at.exception
    assert at.title[0].value == "History"
    chosen = at.selectbox(key="history_run")
    assert chosen.value == 0 and not at.warning
    assert any(f"run {first.run_id}" in c.value for c in at.caption)


def test_an_unknown_run_link_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    new_app(monkeypatch, tmp_path).run()
    at = new_app(monkeypatch, tmp_path)
    at.query_params["run"] = "000000000000"
    at.run()
    assert any("is not among the" in w.value for w in at.warning)


def test_the_wall_view_has_no_navigation_and_only_large_text(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = new_app(monkeypatch, tmp_path)
    at.query_params["view"] = "wall"
    at.run()
    assert not at.exception
    texts = [m.value for m in at.main.markdown]
    assert texts and all(re.match(r"#{2,5} ", t) for t in texts), texts  # headings only
    assert not at.main.caption and not at.main.metric
    assert any("excellent 95" in t for t in texts)  # the tier
    assert any(t.startswith("#### :red[**CRITICAL**]") for t in texts)  # an insight
    assert any(":red[98 \\%" in t for t in texts)  # the CPU tile, coloured by severity
