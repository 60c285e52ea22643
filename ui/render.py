"""Streamlit building blocks shared by the pages: tiles, badges, labels, cards, progress.

Anything a model (or a server) wrote is untrusted: it reaches the page only as
`st.text`, a dataframe cell, or Markdown passed through `ui.safe.md`. Nothing here uses
`unsafe_allow_html`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import streamlit as st

from engine.records import AgentRun, AnalysisResult, Insight
from engine.runner import ProgressEvent
from engine.snapshot import FIELD_BY_NAME, FIELDS, FieldSpec, Snapshot
from engine.timeline import slot_advice, timeline
from ui import charts, safe

SIMULATED_LABEL = "Simulated Ollama — timings are modelled, not measured on a real LLM"
INTERRUPTED_LABEL = "Analysis interrupted: the page started a new run"

BadgeColour = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "primary"]
TIER_BADGE: dict[str, BadgeColour] = {
    "excellent": "green",
    "good": "blue",
    "basic": "orange",
    "single": "violet",
    "fallback": "red",
}
SEVERITY_BADGE: dict[str, BadgeColour] = {
    "CRITICAL": "red",
    "HIGH": "orange",
    "MEDIUM": "yellow",
    "LOW": "blue",
}
RESOURCES: tuple[tuple[str, str], ...] = (
    ("cpu", "CPU"),
    ("memory", "Memory"),
    ("disk", "Disk"),
    ("network", "Network"),
)
USE_KINDS: tuple[tuple[str, str], ...] = (
    ("utilization", "U"),
    ("saturation", "S"),
    ("errors", "E"),
)


# --- pure formatting ----------------------------------------------------------------------


def format_value(spec: FieldSpec, value: float | None) -> str:
    if value is None:
        return "unknown"  # the source had no data for it (Prometheus); never shown as 0
    if spec.unit == "%":
        return f"{value:.0f} %" if value >= 10 or value == 0 else f"{value:.1f} %"
    if spec.unit == "×":
        return f"{value:.1f}×"
    if spec.unit == "ms":
        return f"{value:,.0f} ms"
    if spec.unit == "/s":
        return f"{value:,.0f}/s" if value >= 10 else f"{value:.1f}/s"
    if spec.unit == "count":
        return f"{value:.0f}"
    return f"{value:.1f} {spec.unit}"


def format_delta(spec: FieldSpec, now: float | None, before: float | None) -> str | None:
    """The change since the previous snapshot, or None when there is none worth showing."""
    if now is None or before is None:
        return None
    delta = now - before
    if abs(delta) < spec.quantum / 2:
        return None
    text = format_value(spec, abs(delta))
    return ("+" if delta > 0 else "−") + text


def cache_label(result: AnalysisResult, ttl_s: float | None, *, cache_off: bool = False) -> str:
    """`cached · 42 s old · TTL 300 s · served in 3 ms` or `fresh run · 2.41 s`.

    `ttl_s` None leaves the TTL out (a past run, whose TTL is not recorded). The TTL the
    entry was stored with wins; a degraded result (not every agent answered) says that it
    is kept only briefly."""
    if short_lived(result):
        short = f"degraded result: cached only {result.cache.ttl_s:.0f} s"
        if result.cache.hit:
            age = result.cache.age_s or 0.0
            return f"cached · {age:.0f} s old · {short} · served in {result.execution_time_s * 1000:.0f} ms"
        return f"fresh run · {result.execution_time_s:.2f} s · {short}"
    ttl_s = result.cache.ttl_s if result.cache.ttl_s is not None else ttl_s
    if result.cache.hit:
        age = result.cache.age_s or 0.0
        ttl = f" · TTL {ttl_s:.0f} s" if ttl_s is not None else ""
        return f"cached · {age:.0f} s old{ttl} · served in {result.execution_time_s * 1000:.0f} ms"
    return f"fresh run · {result.execution_time_s:.2f} s" + (" · cache off" if cache_off else "")


def short_lived(result: AnalysisResult) -> bool:
    """A degraded result the cache keeps only for its short TTL."""
    return result.cache.ttl_s is not None and result.agents_participated < result.agents_total


def tier_text(result: AnalysisResult) -> str:
    return f"{result.tier} {result.confidence}"


def agents_text(result: AnalysisResult) -> str:
    return f"{result.agents_participated}/{result.agents_total} agents"


def timing_caption(result: AnalysisResult) -> str:
    """What the waterfall shows. A cache hit's own wall time is how fast it was served, so
    the bars are the original run's; say so, with that run's length."""
    if result.cache.hit:
        ran = timeline(result).span_s
        head = f"Timings of the original run ({ran:.2f} s), served from the cache"
    else:
        head = f"Wall {result.execution_time_s:.2f} s"
    head += f" · critical path {result.critical_path_s:.2f} s"
    if result.quorum_reached_s is not None:
        head += f" · quorum at {result.quorum_reached_s:.2f} s"
    return (
        head + ". Bars: queue → load → prefill → decode as the server reports them; "
        "'other' is what it does not explain (client, network)."
    )


def slots_text(result: AnalysisResult) -> str:
    """How many requests Quorum sent at once, and where that number came from."""
    count = "no limit" if result.server_slots is None else str(result.server_slots)
    return f"Server slots: {count} ({result.server_slots_source or 'not recorded'})"


def slots_notice(result: AnalysisResult) -> None:
    """The slots in use; when they made the run one-at-a-time, what more would give."""
    st.caption(safe.md(slots_text(result)))
    advice = slot_advice(result)
    if advice is not None:
        st.info(safe.md(advice.sentence()), icon=":material/hourglass_top:")


def metric_text(name: str, snapshot: Snapshot | None) -> str:
    """A metric id an insight cites, with its label and (when known) its current value."""
    spec = FIELD_BY_NAME.get(name)
    if spec is None:
        return name  # an id the model made up: shown, escaped, never trusted
    text = f"{spec.label} ({name}"
    if snapshot is not None:
        text += f" = {format_value(spec, snapshot.metric(name))}"
    return text + ")"


# --- tiles, badges and labels -------------------------------------------------------------


def metric_tiles(snapshot: Snapshot, previous: Snapshot | None) -> None:
    """The USE method at a glance: per resource, utilisation / saturation / errors."""
    columns = st.columns(len(RESOURCES))
    for column, (resource, title) in zip(columns, RESOURCES, strict=True):
        with column.container(border=True):
            st.markdown(f"**{title}**")
            for kind, letter in USE_KINDS:
                spec = next(f for f in FIELDS if f.resource == resource and f.kind == kind)
                _tile(spec, letter, snapshot, previous)
    service = [f for f in FIELDS if f.resource == "service" and snapshot.metric(f.name) is not None]
    if service:
        for column, spec in zip(st.columns(len(service)), service, strict=True):
            with column:
                _tile(spec, None, snapshot, previous)
    st.caption(
        safe.md(f"Host {snapshot.host} · {snapshot.cpu_count} cores · source {snapshot.source}")
        + " · U = utilisation, S = saturation, E = errors; deltas are against the previous "
        "snapshot in this session."
    )


def _tile(spec: FieldSpec, letter: str | None, snap: Snapshot, previous: Snapshot | None) -> None:
    now = snap.metric(spec.name)
    before = previous.metric(spec.name) if previous is not None else None
    label = f"{letter} · {spec.label}" if letter else spec.label
    st.metric(
        label,
        format_value(spec, now),
        delta=format_delta(spec, now, before),
        # More traffic is not bad news; more of everything else is.
        delta_color="off" if spec.name == "request_rate_per_s" else "inverse",
        help=f"`{spec.name}` · USE {spec.kind} of {spec.resource}",
    )


def result_header(result: AnalysisResult, ttl_s: float | None, *, cache_off: bool = False) -> None:
    """Tier badge, agent count, missing roles, cache label and the simulated notice."""
    with st.container(horizontal=True, vertical_alignment="center"):
        st.badge(
            tier_text(result), color=TIER_BADGE.get(result.tier, "gray"), icon=":material/verified:"
        )
        st.badge(agents_text(result), color="gray", icon=":material/groups:")
        if result.missing_roles:
            st.badge(
                "missing: " + ", ".join(safe.clean(r, limit=40) for r in result.missing_roles),
                color="orange",
                icon=":material/person_off:",
            )
        st.badge(
            cache_label(result, ttl_s, cache_off=cache_off),
            color="orange" if short_lived(result) else "green" if result.cache.hit else "gray",
            icon=":material/bolt:" if result.cache.hit else ":material/timer:",
        )
        st.badge(f"{result.mode} · {result.backend.kind}", color="gray")
    if result.backend.simulated:
        simulated_notice(result.simulated_profile)
    if result.status == "error":
        st.error(
            safe.md(result.error or "no agent answered"),
            title="No agent answered: these insights come from the deterministic USE checks",
        )
    st.caption(safe.md(result.collaboration_summary))
    verdict = result.consolidation.summary if result.consolidation else None
    if verdict:  # model text: escaped like every other answer
        st.caption(safe.md(f"Consolidator's verdict: {verdict}", limit=300))


def simulated_notice(profile: str | None) -> None:
    suffix = f" (profile {safe.md(profile)})" if profile else ""
    st.info(SIMULATED_LABEL + suffix, icon=":material/science:")


def insight_cards(insights: Sequence[Insight], snapshot: Snapshot | None = None) -> None:
    if not insights:
        st.info("No insights: every USE-method check is within its thresholds.")
        return
    for insight in insights:
        with st.container(border=True):
            with st.container(horizontal=True, vertical_alignment="center"):
                st.badge(insight.severity, color=SEVERITY_BADGE.get(insight.severity, "gray"))
                st.badge(f"confidence {insight.confidence}", color="gray")
                st.markdown(f"**{safe.md(insight.title, limit=200)}**")
            st.markdown(safe.md(insight.observation))
            if insight.recommendations:
                st.markdown("\n".join(f"- {safe.md(rec)}" for rec in insight.recommendations))
            agents = ", ".join(insight.agents) or "USE-method rules only"
            metrics = "; ".join(metric_text(m, snapshot) for m in insight.metrics) or "–"
            st.caption(f"Agents: {safe.md(agents)}  \nRests on: {safe.md(metrics)}")


def agent_table(result: AnalysisResult) -> None:
    """Every call's numbers; a dataframe shows cells as plain text."""
    runs: list[AgentRun] = list(result.agents)
    if result.consolidation is not None:
        runs.append(result.consolidation)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    rows = [
        {
            "agent": r.name,
            "role": r.role,
            "model": r.model,
            "status": r.status,
            "start ms": ms(r.start_s),
            "duration ms": ms(r.duration_s),
            "queue ms": ms(r.queue_s),
            "load ms": ms(r.load_s),
            "prefill ms": ms(r.prefill_s),
            "decode ms": ms(r.decode_s),
            "TTFT ms": ms(r.ttft_s),
            "prompt tokens": r.prompt_tokens,
            "output tokens": r.output_tokens,
            "error": safe.clean(r.error) if r.error else "",
        }
        for r in runs
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def result_details(
    result: AnalysisResult,
    *,
    ttl_s: float | None,
    cache_off: bool = False,
    snapshot: Snapshot | None = None,
    key: str,
) -> None:
    """A whole analysis: header, insights, waterfall and the timing table."""
    result_header(result, ttl_s, cache_off=cache_off)
    left, right = st.columns([5, 6])
    with left:
        st.markdown("#### Insights")
        insight_cards(result.insights, snapshot)
    with right:
        st.markdown("#### Where the time went")
        st.plotly_chart(charts.waterfall(result), key=f"{key}_waterfall")
        st.caption(timing_caption(result))
        slots_notice(result)
        with st.expander("Agent timings"):
            agent_table(result)


# --- live progress ------------------------------------------------------------------------


@dataclass
class _AgentLine:
    placeholder: Any
    tokens: int = 0
    drawn_at: float = 0.0
    done: bool = False


@dataclass
class LiveProgress:
    """The engine's progress callback, drawing one line per agent in an `st.status`.

    The engine calls it from the thread that called `Engine.analyze` (the script thread);
    should it ever arrive from another thread, events are only counted, never drawn,
    because Streamlit calls must stay on the script thread.
    """

    slot: Any  # a container created by the page where the status box should appear
    label: str = "Analysing…"
    min_redraw_s: float = 0.1  # token events come per chunk; redrawing each would flood
    thread_id: int = field(default_factory=threading.get_ident)
    status: Any = None
    lines: dict[str, _AgentLine] = field(default_factory=dict)
    finished: int = 0
    off_thread_events: int = 0
    interrupted: bool = False  # Streamlit stopped or reran the script mid-analysis
    broken: bool = False  # drawing a line failed (the runner logged it): lines stop
    shared: bool = False  # the result came from the same analysis run for another page

    def __call__(self, event: ProgressEvent) -> None:
        if threading.get_ident() != self.thread_id:
            self.off_thread_events += 1
            return
        if self.interrupted or self.broken:
            return
        try:
            self._draw(event)
        except Exception:
            self.broken = True
            raise
        except BaseException:
            # Streamlit stops or reruns a script by raising from the next st.* call, which
            # here is inside the engine: let that one abort the run (the runner cancels the
            # other agents and closes the backend), but stay quiet while it cancels them,
            # or every cancelled agent would raise again from its own "finished" event.
            self.interrupted = True
            raise

    def _draw(self, event: ProgressEvent) -> None:
        if self.status is None:
            self.status = self.slot.status(self.label, expanded=True)
        line = self.lines.get(event.agent)
        if line is None:
            line = self.lines[event.agent] = _AgentLine(self.status.empty())
        self.shared = event.kind == "waiting"  # any other event: this run leads after all
        now = time.monotonic()
        if event.kind == "tokens":
            line.tokens = event.tokens
            if now - line.drawn_at < self.min_redraw_s:
                return
            text = f"{event.agent}: streaming · {line.tokens} tokens · {event.elapsed_s:.1f} s"
        elif event.kind == "started":
            text = f"{event.agent}: started at {event.elapsed_s:.2f} s"
        elif event.kind == "queued":  # not done: waiting for a server slot
            text = f"{event.agent}: queued for a server slot at {event.elapsed_s:.2f} s"
        elif event.kind == "waiting":  # Engine.analyze: another page's run is ours too
            line.done = True
            text = "waiting for the same analysis, already under way for another page"
        else:
            line.done = True
            self.finished += 1
            text = (
                f"{event.agent}: {event.status or 'done'} · {line.tokens} tokens · "
                f"ended at {event.elapsed_s:.2f} s"
            )
        line.drawn_at = now
        line.placeholder.text(safe.clean(text, limit=200))
        running = sum(1 for item in self.lines.values() if not item.done)
        self.status.update(label=f"{self.label} {self.finished} done, {running} running")

    def close(self, result: AnalysisResult | None) -> None:
        """The box's last word, however the run ended: finished, failed or interrupted.

        A run that waited for the same analysis already under way for another page (a
        second tab, a session the browser reconnected: the engine's single-flight) drew
        no box and said nothing about how it ended (the soak's 3 in 494): it gets a
        "waiting" event now, and this last word. So does a run interrupted mid-analysis
        (Streamlit reran or stopped the script), which kept saying "Analysing…". A cache
        hit draws no box: its badge says "cached"."""
        if self.status is None:
            return
        label, state, expanded = self._last_word(result)
        try:
            self._write_last(label, state, expanded)
        except BaseException:
            # Streamlit raises a pending rerun from the next st.* call, before it sends
            # anything: this one. The raise took the request, so a second write goes
            # through (a stop raises again: the session is ending); then the rerun goes on.
            with contextlib.suppress(BaseException):
                self._write_last(INTERRUPTED_LABEL, "error", False)
            raise

    def _last_word(self, result: AnalysisResult | None) -> tuple[str, str, bool]:
        if self.interrupted:
            return INTERRUPTED_LABEL, "error", False
        if result is None:
            return "Analysis failed", "error", True
        label = (
            f"Analysis finished in {result.execution_time_s:.2f} s "
            f"({result.agents_participated}/{result.agents_total} agents)"
        )
        if self.shared:
            label += " · the same analysis, run for another page"
        return label, "complete" if result.status == "success" else "error", False

    def _write_last(self, label: str, state: str, expanded: bool) -> None:
        if self.status is None:
            self.status = self.slot.status(label, state=state, expanded=expanded)
        else:
            self.status.update(label=label, state=state, expanded=expanded)
