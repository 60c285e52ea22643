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
from engine.report.timeline import projected_s, projection_scale, slot_advice, timeline
from engine.run import use_method
from engine.run.runner import ProgressEvent
from engine.sources.snapshot import FIELD_BY_NAME, FIELDS, FieldSpec, Snapshot
from ui import charts, safe

MISSING = "—"
MISSING_TIMINGS = (
    "— : not reported. Queue and load come from Ollama's own timings; OpenAI-compatible "
    "servers report neither, llama.cpp only prefill and decode, and a call that never "
    "started or timed out reports nothing."
)
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
    # ASCII "-": st.metric reads a delta's direction (arrow, colour) from a leading "-"
    # only; a typographic minus (U+2212) made a fall show as a red rise.
    return ("+" if delta > 0 else "-") + text


def real_time(seconds: float, scale: float | None) -> str:
    """`1.88 s`, or on the simulator at a time scale ≠ 1 what that stands for:
    `1.88 s (≈ 18.8 s at real speed; simulator at 0.1×)`."""
    if scale is None:
        return f"{seconds:.2f} s"
    return (
        f"{seconds:.2f} s (≈ {projected_s(seconds, scale):.1f} s at real speed; "
        f"simulator at {scale:g}×)"
    )


def result_scale(result: AnalysisResult) -> float | None:
    """The time scale a result's times were measured at (None: real seconds)."""
    scale = result.simulated_time_scale
    return projection_scale(result.backend.simulated, scale) if scale is not None else None


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
        return f"fresh run · {real_time(result.execution_time_s, result_scale(result))} · {short}"
    ttl_s = result.cache.ttl_s if result.cache.ttl_s is not None else ttl_s
    if result.cache.hit:
        age = result.cache.age_s or 0.0
        ttl = f" · TTL {ttl_s:.0f} s" if ttl_s is not None else ""
        return f"cached · {age:.0f} s old{ttl} · served in {result.execution_time_s * 1000:.0f} ms"
    took = real_time(result.execution_time_s, result_scale(result))
    return f"fresh run · {took}" + (" · cache off" if cache_off else "")


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
    scale = result_scale(result)
    if result.cache.hit:
        ran = timeline(result).span_s
        head = f"Timings of the original run ({real_time(ran, scale)}), served from the cache"
    else:
        head = f"Wall {real_time(result.execution_time_s, scale)}"
    head += f" · critical path {real_time(result.critical_path_s, scale)}"
    if result.quorum_reached_s is not None:
        head += f" · quorum at {real_time(result.quorum_reached_s, scale)}"
    return (
        head + ". Bars: queue → load → prefill → decode as the server reports them; "
        "'other' is what it does not explain (client, network)."
    )


def slots_text(result: AnalysisResult) -> str:
    """How many requests Quorum sent at once, and where that number came from."""
    count = "no limit" if result.server_slots is None else str(result.server_slots)
    source = safe.ui_words(result.server_slots_source or "not recorded")
    return f"Server slots: {count} ({source})"


def slots_notice(result: AnalysisResult) -> None:
    """The slots in use; when they made the run one-at-a-time, what more would give."""
    st.caption(safe.md(slots_text(result)))
    advice = slot_advice(result)
    if advice is not None:
        st.info(safe.md(safe.ui_words(advice.sentence())), icon=":material/hourglass_top:")


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


def checks_count(clear: Sequence[Insight], snapshot: Snapshot | None) -> int:
    """How many USE-method checks passed: the known metrics the rules read, when the
    snapshot is at hand, else the metrics the all-clear insights name."""
    if snapshot is not None:
        return sum(
            1
            for m in use_method.role_metrics(use_method.ALL_ROLES)
            if snapshot.metric(m) is not None
        )
    return len({m for i in clear for m in i.metrics})


def all_clear_card(clear: Sequence[Insight], snapshot: Snapshot | None) -> None:
    """One card for every perspective that found nothing, instead of one card each."""
    perspectives = [
        i.title.removeprefix(use_method.ALL_CLEAR_PREFIX).removesuffix(use_method.ALL_CLEAR_SUFFIX)
        for i in clear
    ]
    agents = sorted({a for i in clear for a in i.agents})
    with st.container(border=True):
        st.markdown(f":green-badge[OK] **All clear ({checks_count(clear, snapshot)} checks)**")
        st.caption(
            safe.md("No issue in: " + ", ".join(perspectives))
            + "  \n"
            + safe.md("Agents: " + (", ".join(agents) or "USE-method rules only"))
        )


def insight_cards(insights: Sequence[Insight], snapshot: Snapshot | None = None) -> None:
    if not insights:
        st.info("No insights: every USE-method check is within its thresholds.")
        return
    clear = [i for i in insights if use_method.is_all_clear(i)]
    insights = [i for i in insights if not use_method.is_all_clear(i)]
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
    if clear:  # after the problems: what was checked and found fine
        all_clear_card(clear, snapshot)


def agent_table(result: AnalysisResult) -> None:
    """Every call's numbers; a dataframe shows cells as plain text."""
    runs: list[AgentRun] = list(result.agents)
    if result.consolidation is not None:
        runs.append(result.consolidation)

    def ms(value: float | None) -> str:
        return MISSING if value is None else f"{value * 1000:,.1f}"

    def count(value: int | None) -> str:
        return MISSING if value is None else f"{value:,}"

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
            "prompt tokens": count(r.prompt_tokens),
            "output tokens": count(r.output_tokens),
            "error": safe.clean(r.error) if r.error else "",
        }
        for r in runs
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(MISSING_TIMINGS)


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
        st.plotly_chart(
            charts.waterfall(result, scale=result_scale(result)), key=f"{key}_waterfall"
        )
        st.caption(timing_caption(result))
        slots_notice(result)
        with st.expander("Agent timings"):
            agent_table(result)


# --- live progress ------------------------------------------------------------------------

StepState = Literal["next", "queued", "running", "done"]


@dataclass
class Step:
    """One call of a run as its progress events tell it."""

    name: str
    state: StepState = "next"
    tokens: int = 0
    queued_s: float | None = None
    started_s: float | None = None
    ended_s: float | None = None
    status: str | None = None


@dataclass
class RunProgress:
    """The steps of ONE run: its agents and its consolidation, counted apart (warm-ups
    send no progress events; the result lists them). Pure: a UI draws `lines()`."""

    agents: list[str]
    consolidator: str | None = None
    scale: float | None = None  # the simulator's time scale, for labels
    steps: dict[str, Step] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.agents, *([self.consolidator] if self.consolidator else [])]:
            self.steps.setdefault(name, Step(name))

    def apply(self, event: ProgressEvent) -> Step:
        step = self.steps.setdefault(event.agent, Step(event.agent))
        if event.agent not in self.agents and event.agent != self.consolidator:
            self.agents.append(event.agent)  # a roster the caller did not list
        if event.kind == "queued":
            step.state, step.queued_s = "queued", event.elapsed_s
        elif event.kind == "started":
            step.state, step.started_s = "running", event.elapsed_s
        elif event.kind == "tokens":
            step.state, step.tokens = "running", event.tokens
        else:
            step.state, step.ended_s, step.status = "done", event.elapsed_s, event.status
        return step

    def counts(self) -> dict[StepState, int]:
        out: dict[StepState, int] = {"next": 0, "queued": 0, "running": 0, "done": 0}
        for name in self.agents:
            out[self.steps[name].state] += 1
        return out

    def label(self) -> str:
        c = self.counts()
        text = f"agents {c['done']}/{len(self.agents)} done, {c['running']} running"
        if c["queued"]:
            text += f", {c['queued']} waiting for a slot"
        if self.consolidator is not None:
            state = self.steps[self.consolidator].state
            words = {"next": "after the agents", "queued": "waiting for a slot"}
            text += " · consolidation " + words.get(state, state)
        return text

    def line(self, step: Step) -> str:
        if step.state == "done":
            ended = real_time(step.ended_s or 0.0, self.scale)
            return f"{step.name}: {step.status or 'done'} · {step.tokens} tokens · ended at {ended}"
        if step.state == "running" and step.started_s is not None:
            since = real_time(step.started_s, self.scale)
            return f"{step.name}: running since {since} · {step.tokens} tokens"
        if step.state == "running":
            return f"{step.name}: running · {step.tokens} tokens"
        return f"{step.name}: " + (
            "waiting for a free server slot" if step.state == "queued" else "next"
        )

    def lines(self) -> list[str]:
        order = [*self.agents, *([self.consolidator] if self.consolidator else [])]
        return [self.line(self.steps[name]) for name in order]


@dataclass
class LiveProgress:
    """The engine's progress callback for one run, drawn in an `st.status`: one text
    element holds every line, so nothing of an earlier run's box can linger in it.

    The engine calls it from the thread that called `Engine.analyze` (the script thread);
    should it ever arrive from another thread, events are only counted, never drawn,
    because Streamlit calls must stay on the script thread.
    """

    slot: Any  # a container created by the page where the status box should appear
    agents: list[str] = field(default_factory=list)
    consolidator: str | None = None
    scale: float | None = None
    label: str = "Analysing…"
    min_redraw_s: float = 0.1  # token events come per chunk; redrawing each would flood
    thread_id: int = field(default_factory=threading.get_ident)
    status: Any = None
    body: Any = None
    run: RunProgress | None = None
    drawn_at: float = 0.0
    off_thread_events: int = 0
    interrupted: bool = False  # Streamlit stopped or reran the script mid-analysis
    broken: bool = False  # drawing a line failed (the runner logged it): lines stop
    shared: bool = False  # the result came from the same analysis run for another page
    # The last word of the run before (`show_previous`), and this run's (set by `close`).
    previous: tuple[str, str] | None = None
    redrawn: bool = False
    last_word: tuple[str, str] | None = None

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
            self.body = self.status.empty()
        if event.kind == "waiting":  # Engine.analyze: another page's run is ours too
            self.shared = True
            self.body.text("waiting for the same analysis, already under way for another page")
            return
        self.shared = False  # any other event: this run leads after all
        if self.run is None:
            self.run = RunProgress(list(self.agents), self.consolidator, self.scale)
        self.run.apply(event)
        now = time.monotonic()
        if event.kind == "tokens" and now - self.drawn_at < self.min_redraw_s:
            return
        self.drawn_at = now
        self.body.text("\n".join(safe.clean(line, limit=200) for line in self.run.lines()))
        self.status.update(label=f"{self.label} {self.run.label()}")

    def close(self, result: AnalysisResult | None) -> None:
        """The box's last word, however the run ended: finished, failed or interrupted.

        A run that waited for the same analysis already under way for another page (a
        second tab, a session the browser reconnected: the engine's single-flight) drew
        no box and said nothing about how it ended (the soak's 3 in 494): it gets a
        "waiting" event now, and this last word. So does a run interrupted mid-analysis
        (Streamlit reran or stopped the script), which kept saying "Analysing…". A cache
        hit draws no box: its badge says "cached"."""
        if self.status is None:
            if self.redrawn:  # the run before's box, and this run drew none of its own
                self.slot.empty()
            return
        label, state, expanded = self._last_word(result)
        self.last_word = (label, state)
        try:
            self._write_last(label, state, expanded)
        except BaseException:
            self.last_word = (INTERRUPTED_LABEL, "error")
            # Streamlit raises a pending rerun from the next st.* call, before it sends
            # anything: this one. The raise took the request, so a second write goes
            # through (a stop raises again: the session is ending); then the rerun goes on.
            with contextlib.suppress(BaseException):
                self._write_last(INTERRUPTED_LABEL, "error", False)
            raise

    def show_previous(self) -> None:
        """Draw the run before's last word again, before this run's first event replaces it.

        Streamlit discards what a run wrote but had not yet sent when the next run starts
        (`AppSession._clear_queue`): the Live page keeps its timer's reruns away from the
        panel's writes, but a full rerun still discards everything unsent, and the page
        would keep the "Analysing…" it last received. Redrawn here, from session state,
        the last word comes back with the next run's first writes."""
        if self.previous is not None and self.status is None:
            label, state = self.previous
            self.slot.status(label, state=state, expanded=False)
            self.redrawn = True

    def _last_word(self, result: AnalysisResult | None) -> tuple[str, str, bool]:
        if self.interrupted:
            return INTERRUPTED_LABEL, "error", False
        if result is None:
            return "Analysis failed", "error", True
        warm = f", {len(result.warmups)} consolidation warm-ups" if result.warmups else ""
        label = (
            f"Analysis finished in {real_time(result.execution_time_s, result_scale(result))} "
            f"({result.agents_participated}/{result.agents_total} agents{warm})"
        )
        if self.shared:
            label += " · the same analysis, run for another page"
        return label, "complete" if result.status == "success" else "error", False

    def _write_last(self, label: str, state: str, expanded: bool) -> None:
        if self.status is None:
            self.status = self.slot.status(label, state=state, expanded=expanded)
        else:
            self.status.update(label=label, state=state, expanded=expanded)


# --- the status strip (Live's first screen, the wall view) ---------------------------------


def result_age_s(result: AnalysisResult, now: float | None = None) -> float:
    """How old the analysis is: a cache hit's entry age plus the time since it was served."""
    served = max(0.0, (now if now is not None else time.time()) - result.created_at)
    return served + (result.cache.age_s or 0.0 if result.cache.hit else 0.0)


def age_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def verdict_text(result: AnalysisResult, snapshot: Snapshot | None = None) -> str:
    """The one line a glance needs: the Consolidator's summary, else what answered."""
    clear = [i for i in result.insights if use_method.is_all_clear(i)]
    summary = result.consolidation.summary if result.consolidation is not None else None
    if clear and (not summary or any(summary == i.title for i in clear)):
        rest = len(result.insights) - len(clear)
        more = f"; {rest} other finding{'s' if rest != 1 else ''}" if rest else ""
        return f"All clear ({checks_count(clear, snapshot)} checks){more}"
    if summary:
        return summary
    if not result.insights:
        return "Every USE-method check is within its thresholds."
    return result.collaboration_summary


def status_strip(result: AnalysisResult, snapshot: Snapshot | None = None) -> None:
    """Tier, verdict, the top three insights and the result's age, in one bordered box."""
    with st.container(border=True, key="status_strip"):
        with st.container(horizontal=True, vertical_alignment="center"):
            st.badge(
                tier_text(result),
                color=TIER_BADGE.get(result.tier, "gray"),
                icon=":material/verified:",
            )
            st.badge(agents_text(result), color="gray", icon=":material/groups:")
            st.badge(
                f"analysed {age_text(result_age_s(result))}"
                + (" · from the cache" if result.cache.hit else ""),
                color="gray",
                icon=":material/schedule:",
            )
            if result.backend.simulated:
                st.badge("simulated", color="violet", icon=":material/science:")
        st.markdown(f"**{safe.md(verdict_text(result, snapshot), limit=300)}**")
        issues = [i for i in result.insights if not use_method.is_all_clear(i)]
        for insight in issues[:3]:
            colour = SEVERITY_BADGE.get(insight.severity, "gray")
            metrics = ", ".join(metric_text(m, snapshot) for m in insight.metrics[:2])
            st.markdown(
                f":{colour}-badge[{insight.severity}] {safe.md(insight.title, limit=160)}"
                + (f" — {safe.md(metrics, limit=160)}" if metrics else "")
            )
        if len(issues) > 3:
            st.caption(f"{len(issues) - 3} more insights below.")
