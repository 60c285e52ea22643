"""The Compare page: four runs, speedups, the shared-axis waterfalls, the slot slider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app_live import new_app
from ui import safe


def compare_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    at = new_app(monkeypatch, tmp_path).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    (value,) = [m.value for m in at.metric if m.label == label]
    return value


def plot_specs(at: AppTest) -> dict[str, dict[str, object]]:
    return {str(el.key): json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def test_nothing_runs_until_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = compare_page(monkeypatch, tmp_path)
    assert at.button(key="compare_run").label == "Run comparison"
    assert at.slider(key="compare_slots").value == 6  # the sidebar's slots
    assert any("Run comparison" in i.value for i in at.info)
    assert not at.metric


def test_a_comparison_shows_table_speedup_and_shared_axis_waterfalls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)
    at.button(key="compare_run").click().run()
    assert not at.exception
    speedup = metric(at, "Speedup")
    assert speedup.endswith("×") and float(speedup[:-1]) > 1.0  # parallel beat sequential
    assert metric(at, "Ideal speedup").endswith("×")
    table = at.dataframe[0].value
    assert list(table["run"]) == ["single", "sequential", "parallel", "cached"]
    assert list(table["cache hit"]) == [False, False, False, True]
    assert set(table["tier"]) <= {"single", "excellent"}
    specs = plot_specs(at)
    assert {"compare_bars", "compare_waterfalls"} <= set(specs)
    layout = specs["compare_waterfalls"]["layout"]
    assert isinstance(layout, dict) and layout["xaxis"]["matches"] == "x2"
    assert not at.warning  # six slots: the server ran the agents in parallel


def test_one_slot_is_called_out_as_serialised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)
    at.slider(key="compare_slots").set_value(1).run()
    at.button(key="compare_run").click().run()
    assert not at.exception
    (warning,) = at.warning
    assert "one at a time" in warning.value
    assert safe.md("(Ollama: OLLAMA_NUM_PARALLEL=5; llama.cpp: --parallel 5)") in warning.value
    assert any(safe.md("Server slots: 1 (the simulated") in c.value for c in at.caption)
    assert any(safe.md("1 slot(s)") in c.value for c in at.caption)
