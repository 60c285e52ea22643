"""What the Live page remembers between reruns: the previous snapshot (for the tiles'
deltas), the last run's wall time (so auto-refresh never outruns the analysis), and the
steps a run's progress box lists before its events arrive.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine.records import AnalysisResult
from engine.report.timeline import projection_scale
from engine.service import Engine
from engine.sources import snapshot as snapshots
from ui.context import Context
from ui.sources import SnapshotSource

_PREVIOUS_KEY = "live_previous_snapshot"


def previous_snapshot(
    snap: snapshots.Snapshot, source: SnapshotSource
) -> snapshots.Snapshot | None:
    """The snapshot read before this one from the same source (for the tiles' deltas)."""
    label = source.label
    stored = st.session_state.get(_PREVIOUS_KEY)
    previous: snapshots.Snapshot | None = None
    if isinstance(stored, tuple) and len(stored) == 3 and stored[0] == label:
        last, before = stored[1], stored[2]
        # A rerun without a new reading (same timestamp) keeps the older comparison.
        previous = before if last.timestamp == snap.timestamp else last
    st.session_state[_PREVIOUS_KEY] = (label, snap, previous)
    return previous


# --- Live: auto-refresh that never outruns the analysis, and its progress steps ---------------

REFRESH_OPTIONS_S: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300)
# The page must be readable between runs: an interval shorter than the last run becomes
# the first option at least this many times that run (so it is idle a third of the time).
REFRESH_OVER_RUN = 1.5
_LAST_RUN_KEY = "live_last_run_s"
_ARMED_KEY = "live_interval_armed"


def last_run_s() -> float | None:
    value = st.session_state.get(_LAST_RUN_KEY)
    return float(value) if isinstance(value, int | float) else None


def stretch_interval(chosen_s: int, last_run: float | None) -> tuple[int, str | None]:
    """The interval to use and, when it had to be longer than chosen, why (pure)."""
    if last_run is None or chosen_s >= last_run:
        return chosen_s, None
    need = REFRESH_OVER_RUN * last_run
    longer = [s for s in REFRESH_OPTIONS_S if s >= need]
    interval = longer[0] if longer else int(need) + 1
    return interval, (
        f"Refresh every {chosen_s} s is shorter than the last analysis "
        f"({last_run:.1f} s of wall time): stretched to {interval} s, so the page is not "
        "greyed out while it analyses most of the time."
    )


def refresh_interval(chosen_s: int, last_run: float | None) -> tuple[int, str | None]:
    """`stretch_interval`, remembered as the interval the page's timer was armed with."""
    interval, why = stretch_interval(chosen_s, last_run)
    st.session_state[_ARMED_KEY] = interval
    return interval, why


def note_run(result: AnalysisResult) -> None:
    """Remember a fresh run's wall time (a cache hit's says nothing about the next run)."""
    if not result.cache.hit:
        st.session_state[_LAST_RUN_KEY] = result.execution_time_s


def must_rearm(chosen_s: int) -> bool:
    """True when the timer was armed with an interval the last run no longer fits.

    The Live page asks this at the start of a refresh, before it draws anything: the
    rerun that re-arms the timer discards what the run wrote but Streamlit had not yet
    sent, and asked right after the analysis (as it was) it took the status box's last
    word with it, leaving "Analysing…" on the page (issue 18: 3 of 494 refreshes)."""
    interval, _ = stretch_interval(chosen_s, last_run_s())
    return bool(st.session_state.get(_ARMED_KEY, interval) != interval)


_LAST_WORD_KEY = "live_last_word"


def last_word() -> tuple[str, str] | None:
    """The status box's last word of the previous run (label, state), if any."""
    stored = st.session_state.get(_LAST_WORD_KEY)
    if isinstance(stored, tuple) and len(stored) == 2:
        return str(stored[0]), str(stored[1])
    return None


def remember_last_word(word: tuple[str, str] | None) -> None:
    st.session_state[_LAST_WORD_KEY] = word


def progress_steps(ctx: Context, engine: Engine) -> dict[str, Any]:
    """What a run's progress box lists before its events arrive: its agents (the
    generalist alone in single mode), the consolidator, and the simulator's time scale."""
    roster = engine.roster
    single = ctx.settings.mode == "single"
    agents = [roster.generalist.name] if single else [s.name for s in roster.specialists]
    return {
        "agents": agents,
        "consolidator": None if single else roster.consolidator.name,
        "scale": projection_scale(engine.backend.simulated, engine.backend.sim.time_scale),
    }
