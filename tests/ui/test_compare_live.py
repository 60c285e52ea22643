"""ui.compare_live: the comparison's step list and race bars, from progress events."""

from __future__ import annotations

from engine.report.compare import COMPARE_STEPS
from engine.run.runner import ProgressEvent
from tests.support.results import make_result
from ui.compare_live import CompareRace


def race() -> CompareRace:
    return CompareRace(["A", "B"], "Generalist", "Consolidator", slots=1, scale=0.1)


def test_bars_grow_with_the_events_and_waiting_is_drawn_apart() -> None:
    r = race()
    r.event("sequential", ProgressEvent("A", "queued", 0.0), now=0.0)
    r.event("sequential", ProgressEvent("A", "started", 0.0), now=0.0)
    r.event("sequential", ProgressEvent("A", "tokens", 0.5, tokens=10), now=0.5)
    (bar,) = r.bars("sequential")
    assert (bar.state, bar.start_s, bar.end_s) == ("running", 0.0, 5.0)  # projected seconds
    r.event("sequential", ProgressEvent("B", "queued", 0.0), now=0.6)
    r.event("sequential", ProgressEvent("A", "finished", 1.0, status="ok"), now=1.0)
    r.event("sequential", ProgressEvent("B", "started", 1.0), now=1.0)
    r.event("sequential", ProgressEvent("B", "tokens", 1.5, tokens=3), now=1.5)
    states = [(b.label, b.state, b.start_s, b.end_s) for b in r.bars("sequential")]
    assert states == [
        ("A", "answered", 0.0, 10.0),
        ("B", "waiting", 0.0, 10.0),
        ("B", "running", 10.0, 15.0),
    ]
    assert r.span_s() >= 15.0


def test_the_step_list_says_done_running_next_with_estimates() -> None:
    r = race()
    lines = r.step_lines(now=0.0)
    assert lines[0].startswith("▶ running · single generalist")
    assert all(line.startswith("· next") for line in lines[1:])
    assert "estimate after the first run" in lines[1]
    r.finished("single", make_result(mode="single", wall=1.0), now=1.0)
    lines = r.step_lines(now=1.0)
    assert lines[0].startswith("✓ done · single generalist · 1.00 s (≈ 10.0 s at real speed")
    # sequential: three calls (two agents and the full consolidation) one after another
    assert "≈ 3.00 s (≈ 30.0 s at real speed" in lines[1]
    assert len(lines) == len(COMPARE_STEPS)
