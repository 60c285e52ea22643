"""Compare, live: a step list of `Engine.compare`'s runs and the sequential and parallel
runs drawn bar by bar on one time axis as their progress events arrive.

`CompareRace` is the pure model (events in, steps and bars out); `CompareLiveView` draws
it into two placeholders. The engine calls back on the script thread (as `LiveProgress`
documents), so a click on "Cancel" raises Streamlit's rerun from the next draw, which
aborts the comparison cleanly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.records import AnalysisResult
from engine.report.compare import COMPARE_STEPS
from engine.run.runner import ProgressEvent
from ui import charts, safe
from ui.render import RunProgress, real_time

STEP_LABELS: dict[str, str] = {
    "single": "single generalist",
    "sequential": "before: sequential, full consolidation",
    "parallel": "after: parallel, compact consolidation",
    "cached": "after, from the cache",
    "full_cold": "variant: full, no warm-up",
    "compact_cold": "variant: compact, no warm-up",
    "compact_warm": "variant: compact, warmed",
}
RACE_RUNS: tuple[str, str] = ("sequential", "parallel")
BarState = Literal["waiting", "running", "answered", "failed"]


@dataclass(frozen=True)
class Bar:
    run: str
    label: str
    start_s: float
    end_s: float
    state: BarState


@dataclass
class CompareRace:
    agents: list[str]
    generalist: str
    consolidator: str
    slots: int | None
    scale: float | None = None
    runs: dict[str, RunProgress] = field(default_factory=dict)
    results: dict[str, AnalysisResult] = field(default_factory=dict)
    began: dict[str, float] = field(default_factory=dict)  # monotonic start of each run
    now_s: dict[str, float] = field(default_factory=dict)  # latest event time per run

    def event(self, run: str, event: ProgressEvent, now: float) -> None:
        names = [self.generalist] if run == "single" else self.agents
        cons = None if run == "single" else self.consolidator
        progress = self.runs.setdefault(run, RunProgress(list(names), cons, self.scale))
        progress.apply(event)
        self.began.setdefault(run, now)
        self.now_s[run] = max(self.now_s.get(run, 0.0), event.elapsed_s)

    def finished(self, run: str, result: AnalysisResult, now: float) -> None:
        self.results[run] = result
        self.began.setdefault(run, now)

    def current(self) -> str | None:
        return next((r for r in COMPARE_STEPS if r not in self.results), None)

    def estimate_s(self, run: str) -> float | None:
        """A run's expected wall time (measured seconds): from the single run's one call
        (the sequential run makes six, one after another; the parallel one as many rounds
        as the slots need, plus a short consolidation), then from the parallel run."""
        if run in self.results:
            return self.results[run].execution_time_s
        single = self.results.get("single")
        if run == "single" or single is None:
            return None
        call = single.execution_time_s
        if run == "sequential":
            own = self._sequential_so_far()
            return own if own is not None else call * (len(self.agents) + 1)
        if run == "cached":
            return 0.0
        parallel = self.results.get("parallel")
        if parallel is not None:
            return parallel.execution_time_s
        rounds = math.ceil(len(self.agents) / (self.slots or len(self.agents)))
        return call * (rounds + 0.3)

    def _sequential_so_far(self) -> float | None:
        """The sequential run's estimate from its own answered agents: their mean call
        for each call still to come (the full consolidation counted as one)."""
        progress = self.runs.get("sequential")
        if progress is None:
            return None
        done = [
            s for n in progress.agents if (s := progress.steps[n]).state == "done"
            and s.started_s is not None and s.ended_s is not None
        ]  # fmt: skip
        if not done:
            return None
        mean = sum((s.ended_s or 0.0) - (s.started_s or 0.0) for s in done) / len(done)
        left = len(progress.agents) - len(done) + 1
        return (
            max(self.now_s.get("sequential", 0.0), max(s.ended_s or 0.0 for s in done))
            + mean * left
        )

    def step_lines(self, now: float) -> list[str]:
        current = self.current()
        lines = []
        for run in COMPARE_STEPS:
            label = STEP_LABELS.get(run, run)
            est = self.estimate_s(run)
            est_text = "estimate after the first run" if est is None else f"≈ {self._t(est)}"
            if run in self.results:
                r = self.results[run]
                took = (
                    f"{r.execution_time_s * 1000:.0f} ms"
                    if r.cache.hit
                    else self._t(r.execution_time_s)
                )
                lines.append(f"✓ done · {label} · {took} · {r.tier} {r.confidence}")
            elif run == current:
                elapsed = now - self.began.get(run, now)
                progress = self.runs.get(run)
                counts = f" · {progress.label()}" if progress is not None else ""
                lines.append(f"▶ running · {label} · {self._t(elapsed)} so far, {est_text}{counts}")
            else:
                lines.append(f"· next · {label} · {est_text}")
        return lines

    def _t(self, seconds: float) -> str:
        return real_time(seconds, self.scale)

    def bars(self, run: str) -> list[Bar]:
        """The run's bars so far; a running call's bar ends at the run's latest event."""
        progress = self.runs.get(run)
        if progress is None:
            return []
        now = self.now_s.get(run, 0.0)
        k = 1 / self.scale if self.scale else 1.0
        out = []
        order = [*progress.agents, *([progress.consolidator] if progress.consolidator else [])]
        for name in order:
            step = progress.steps[name]
            if step.queued_s is not None and step.state in ("queued", "running", "done"):
                sent = step.started_s if step.started_s is not None else now
                if sent > step.queued_s:
                    out.append(Bar(run, name, step.queued_s * k, sent * k, "waiting"))
            if step.started_s is not None:
                end = step.ended_s if step.ended_s is not None else now
                state: BarState = (
                    "running"
                    if step.state != "done"
                    else "answered"
                    if step.status == "ok"
                    else "failed"
                )
                out.append(Bar(run, name, step.started_s * k, max(end, step.started_s) * k, state))
        return out

    def span_s(self) -> float:
        """The axis' right edge (axis seconds): the slower run's estimate or its bars."""
        k = 1 / self.scale if self.scale else 1.0
        ends = [b.end_s for run in RACE_RUNS for b in self.bars(run)]
        estimates = [e * k for e in (self.estimate_s(r) for r in RACE_RUNS) if e is not None]
        return max([*ends, *estimates, 0.001])


@dataclass
class CompareLiveView:
    """Draws a `CompareRace` into the page as events arrive (at most every `min_redraw_s`)."""

    race: CompareRace
    steps_slot: Any
    chart_slot: Any
    min_redraw_s: float = 0.25
    drawn_at: float = 0.0
    draws: int = 0

    def event(self, run: str, event: ProgressEvent) -> None:
        now = time.monotonic()
        self.race.event(run, event, now)
        if event.kind == "tokens" and now - self.drawn_at < self.min_redraw_s:
            return
        self.draw(now)

    def finished(self, run: str, result: AnalysisResult) -> None:
        now = time.monotonic()
        self.race.finished(run, result, now)
        self.draw(now)

    def draw(self, now: float) -> None:
        self.drawn_at = now
        self.draws += 1
        lines = [safe.clean(line, limit=300) for line in self.race.step_lines(now)]
        self.steps_slot.text("\n".join(lines))
        bars = {run: self.race.bars(run) for run in RACE_RUNS}
        if any(bars.values()):
            rows = {run: [*self.race.agents, self.race.consolidator] for run in RACE_RUNS}
            fig = charts.race(bars, span_s=self.race.span_s(), scale=self.race.scale, rows=rows)
            self.chart_slot.plotly_chart(fig, key=f"compare_race_{self.draws}")
