"""The Compare page: four runs, speedups, the shared-axis waterfalls, the slot slider, the
consolidation variants and the projection of scaled simulator times to real time."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine.report.timeline import PROJECTED_LABEL
from tests.support.app_test import new_app, page_script
from ui import safe


def compare_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    at = new_app(monkeypatch, tmp_path).run()
    at.switch_page(page_script("compare")).run()
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
    # one setting, one control: the server's slots are the sidebar's only
    assert "compare_slots" not in [getattr(w, "key", None) for w in at.slider]
    assert any("Run comparison" in i.value for i in at.info)
    assert not at.metric


def test_a_comparison_shows_before_after_tiles_and_shared_axis_waterfalls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)
    at.button(key="compare_run").click().run()
    assert not at.exception
    speedup = metric(at, "Speedup")
    before, after = metric(at, "Wall: before → after").split(" → ")
    assert float(before.removesuffix(" s")) > float(after.removesuffix(" s"))
    assert metric(at, "Cached").endswith(" ms")
    table = at.dataframe[0].value
    # The speedup is the table's sequential ÷ parallel time (on the baseline profile's
    # CPU curve, measured here, parallel slots may not beat one at a time: it says so).
    times = dict(zip(table["run"], table["time (s)"], strict=True))
    assert speedup.endswith("×")
    assert float(speedup[:-1]) == pytest.approx(times["sequential"] / times["parallel"], abs=0.02)
    assert list(table["run"]) == ["single", "sequential", "parallel", "cached"]
    assert list(table["cache hit"]) == [False, False, False, True]
    assert set(table["tier"]) <= {"single", "excellent"}
    # the plan's "before": sequential with the full consolidation
    comp = at.session_state["compare_data"][1]
    assert comp.runs["sequential"].mode == "sequential"
    full = comp.runs["sequential"].consolidation
    assert full is not None and full.summary is None  # full: no verdict line
    specs = plot_specs(at)
    assert {"compare_bars", "compare_waterfalls"} <= set(specs)
    layout = specs["compare_waterfalls"]["layout"]
    assert isinstance(layout, dict) and layout["xaxis"]["matches"] == "x2"
    # the live view (step list, race chart; tests/ui/test_e2e_story.py watches it grow) is
    # gone once the results are drawn: they start at the top of the page
    assert not [k for k in specs if k.startswith("compare_race_")]
    assert not [t for t in at.text if "before: sequential" in t.value]
    # one sentence on what bounded the result: its critical path, or — when its agents
    # waited for the server's slots for a real share of the run, which depends on the
    # machine's speed at this time scale — the slot advice
    assert any(
        m.value.startswith("Bounded by") or m.value.startswith("The server ran the")
        for m in at.markdown
    )
    # Four slots (the default) for five agents: any warning is the advice on a fifth slot.
    assert all(safe.md("at most 4 at a time") in w.value for w in at.warning)


def test_one_slot_is_called_out_as_serialised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)
    at.sidebar.slider(key="sim_slots").set_value(1).run()
    at.button(key="compare_run").click().run()
    assert not at.exception
    (bound,) = [m.value for m in at.markdown if "one at a time" in m.value]
    # What 5 slots would give, on the profile's curve: the instruction where they help,
    # else that they would not (the CPU curve measured here shares two cores).
    assert safe.md("On its throughput curve (the simulated baseline profile's") in bound
    assert any(
        safe.md(text) in bound
        for text in ("(Ollama: OLLAMA_NUM_PARALLEL=5; llama.cpp: --parallel 5)", "would not help",
                     "would slow it down")
    )  # fmt: skip
    assert any(safe.md("Server slots: 1 (the simulated") in c.value for c in at.caption)
    assert any(safe.md("1 slot(s)") in c.value for c in at.caption)


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The one table on the page with `column`."""
    (found,) = [df.value for df in at.dataframe if column in df.value.columns]
    assert isinstance(found, pd.DataFrame)
    return found


VARIANTS = ["full, no warm-up (before)", "compact, no warm-up", "compact, warmed (default)"]


def measures(at: AppTest) -> dict[str, list[str]]:
    """The consolidation table (a column per variant, a row per measure) as measure → the
    three variants' values, in VARIANTS order."""
    found = table(at, "measure")
    assert list(found.columns) == ["measure", *VARIANTS]
    return {str(row["measure"]): [row[v] for v in VARIANTS] for row in found.to_dict("records")}


def texts(at: AppTest) -> list[str]:
    """Every text the page shows in markdown, captions, info boxes and metrics."""
    out = [
        str(getattr(el, "value", ""))
        for kind in ("markdown", "caption", "info")
        for el in at.get(kind)
    ]
    return out + [f"{m.label} {m.value} {m.proto.delta}" for m in at.metric]


def test_the_consolidation_variants_get_a_table_and_waterfalls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)
    at.button(key="compare_run").click().run()
    assert not at.exception
    assert "Consolidation: full vs compact, cold vs warm" in [t.label for t in at.tabs]
    variants = measures(at)
    assert list(variants["method"]) == ["llm", "llm", "llm"]
    evaluated = [int(n) for n in variants["prompt evaluated"]]
    # The full prompt carries the whole answers. (That warm-ups cut the compact one further
    # is tests/test_cli.py's: here, at time scale 0.01, the answers may all land at once.)
    assert evaluated[0] > evaluated[1] and evaluated[0] > evaluated[2]
    assert list(variants["warm-ups (evaluated)"])[:2] == ["— (none sent)", "— (none sent)"]
    after = [float(s) for s in variants["after last agent (s)"]]
    assert after[1] < after[0] and after[2] < after[0]  # compact adds less than full
    specs = plot_specs(at)
    for key in ("compare_consolidation_full", "compare_consolidation_warm"):
        layout = specs[key]["layout"]
        assert isinstance(layout, dict) and layout["xaxis"]["matches"] == "x2"  # one axis
    full_layout = specs["compare_consolidation_full"]["layout"]
    assert isinstance(full_layout, dict)
    full_titles = [a["text"] for a in full_layout["annotations"]]
    assert full_titles[:2] == ["full, no warm-up (before)", "compact, warmed (default)"]
    label = "After the last agent: full → compact, warmed"
    (after_metric,) = [m for m in at.metric if m.label == label]
    before, _, now = after_metric.value.partition(" → ")
    assert float(before.removesuffix(" s")) == pytest.approx(after[0], abs=0.006)
    assert float(now.removesuffix(" s")) == pytest.approx(after[2], abs=0.006)
    (tokens_metric,) = [m for m in at.metric if m.label == "Consolidator prompt tokens evaluated"]
    assert tokens_metric.value == f"{evaluated[0]} → {evaluated[2]}"


def test_scaled_simulator_times_are_also_projected_to_real_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)  # the simulator at time scale 0.01
    at.button(key="compare_run").click().run()
    assert not at.exception
    # tiles in projected seconds, the measured values in the caption
    comp = at.session_state["compare_data"][1]
    seq_s, par_s = comp.runs["sequential"].execution_time_s, comp.runs["parallel"].execution_time_s
    assert metric(at, "Wall: before → after") == f"{seq_s / 0.01:.1f} s → {par_s / 0.01:.1f} s"
    measured = safe.md(f"measured {seq_s:.2f} s → {par_s:.2f} s")
    assert any(measured in c.value for c in at.caption)
    runs = {str(r["run"]): r for r in table(at, "run").to_dict("records")}
    for name in ("time", "critical path"):
        for run in ("single", "sequential", "parallel"):
            scaled, real = runs[run][f"{name} (s)"], runs[run][f"{name}, projected (s)"]
            assert float(real) == pytest.approx(scaled / 0.01, abs=0.11)
    # a cache lookup is real time: "—" with why, never a bare None
    assert runs["cached"]["time, projected (s)"] == "— (a cache lookup: not simulated)"
    variants = measures(at)
    for name in ("wall", "after last agent"):
        pairs = zip(variants[f"{name} (s)"], variants[f"{name}, projected (s)"], strict=True)
        for scaled, real in pairs:
            assert float(real) == pytest.approx(float(scaled) / 0.01, abs=0.11)
    notes = [c.value for c in at.caption if c.value.startswith("*projected*")]
    assert len(notes) == 2 and all(PROJECTED_LABEL in n for n in notes)
    walls = next(m for m in at.metric if m.label == "Parallel wall: full → compact, warmed")
    before, now = walls.value.split(" → ")
    real_before, real_now = walls.proto.delta.removesuffix(f" {PROJECTED_LABEL}").split(" → ")
    assert float(real_before.removesuffix(" s")) == pytest.approx(
        float(before.removesuffix(" s")) / 0.01, abs=0.6
    )
    assert float(real_now.removesuffix(" s")) == pytest.approx(
        float(now.removesuffix(" s")) / 0.01, abs=0.6
    )


def test_real_time_figures_are_not_projected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = compare_page(monkeypatch, tmp_path)
    at.button(key="compare_run").click().run()
    ran_on, data, scale = at.session_state["compare_data"]
    assert scale == 0.01
    # The same comparison as a real server (or the simulator at time scale 1) would store it.
    at.session_state["compare_data"] = (ran_on, data, None)
    at.run()
    assert not at.exception
    assert not [t for t in texts(at) if "projected" in t.lower()]
    assert not [c for df in at.dataframe for c in df.value.columns if "projected" in c]
    rows = measures(at)
    assert not [m for m in rows if "projected" in m] and "wall (s)" in rows
