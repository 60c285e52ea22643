"""Every sidebar widget: the app's page links, backend, snapshot source, run settings.

`render_sidebar` is called by app.py once per full run, before the page; it stores the
resulting `Context` in session state for `ui.context.context()`. Each section returns a
small frozen record of what it decided.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from engine.backends.ollama import ollama_base_url
from engine.backends.registry import OLLAMA, OPENAI, SIMULATED
from engine.backends.server_slots import parse_slots_setting
from engine.redact import redact_url
from engine.run.agents import DEFAULT_MODEL
from engine.run.runner import MODES, RunSettings
from engine.service import BackendConfig, default_data_dir
from engine.settings import Settings
from engine.simulator import PROFILES, SimConfig
from engine.sources import snapshot as snapshots
from engine.store.state import StateConfig
from ui import navigation, safe
from ui import prometheus as prom_ui
from ui.config import cache_state, current, default_choice
from ui.context import BACKEND_CHOICES, CONTEXT_KEY, BackendChoice, Context
from ui.resources import detect, endpoint_statuses, probe
from ui.sources import (
    DEFAULT_SCENARIO,
    SOURCE_LABELS,
    SnapshotSource,
    SourceKind,
    parse_upload,
    snapshot_error_message,
)


@dataclass(frozen=True)
class BackendSection:
    """What the Backend section decided; `backend` is None when its settings are invalid."""

    choice: BackendChoice
    backend: BackendConfig | None
    error: str | None = None
    detected: str | None = None  # what Auto found, for display
    api_key_source: str | None = None


@dataclass(frozen=True)
class SourceSection:
    source: SnapshotSource
    error: str | None = None


@dataclass(frozen=True)
class EngineSection:
    """The Advanced expander's run settings and result-cache switch."""

    settings: RunSettings
    cache_enabled: bool
    ttl_s: float


@dataclass(frozen=True)
class AnalysisSection:
    engine: EngineSection
    degraded_ttl_s: float
    state: StateConfig  # quorum.toml's [cache] and $QUORUM_CACHE_URL (the sidebar's defaults)
    state_error: str | None


def render_sidebar(*, links: bool = True) -> Context:
    """Draw the sidebar (with the page links unless `links` is False) and store its Context."""
    settings = current()
    with st.sidebar:
        if links:
            navigation.page_links()
        st.markdown("### Backend")
        backend = _backend_section(settings)
        st.markdown("### Snapshot")
        source = _snapshot_section(settings)
        st.markdown("### Analysis")
        analysis = _analysis_section(settings)
    ctx = Context(
        choice=backend.choice,
        backend=backend.backend,
        backend_error=backend.error,
        settings=analysis.engine.settings,
        source=source.source,
        source_error=source.error,
        cache_enabled=analysis.engine.cache_enabled,
        ttl_s=analysis.engine.ttl_s,
        data_dir=default_data_dir(),
        roster=settings.roster,
        roster_path=settings.config_path,
        roster_error=settings.errors.get("agents"),
        detected=backend.detected,
        api_key_source=backend.api_key_source,
        degraded_ttl_s=analysis.degraded_ttl_s,
        cache_url=analysis.state.url,
        lease_s=analysis.state.lease_s,
        state_error=analysis.state_error,
    )
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def _analysis_section(settings: Settings) -> AnalysisSection:
    mode = st.segmented_control(
        "Mode", list(MODES), default="parallel", required=True, key="run_mode",
        bind="query-params",
    )  # fmt: skip
    state, state_error = cache_state(settings)
    changed = advanced_changes(state)
    label = "Advanced" + (f" · {len(changed)} changed" if changed else "")
    with st.expander(label, expanded=False, key="advanced", icon=":material/tune:"):
        engine = _engine_section(mode or "parallel", state.ttl_s)
        degraded_ttl_s = _degraded_ttl_section(state.degraded_ttl_s)
        if changed:
            st.caption("Changed from the defaults: " + ", ".join(changed) + ".")
    if state_error:
        st.error(safe.md(state_error), title="quorum.toml [cache] ignored: cache on disk")
    return AnalysisSection(engine, degraded_ttl_s, state, state_error)


# --- Backend ------------------------------------------------------------------------------


def _backend_section(settings: Settings) -> BackendSection:
    choices = list(BACKEND_CHOICES)
    choice: BackendChoice = st.selectbox(
        "Backend",
        choices,
        index=choices.index(default_choice(settings)),
        format_func=lambda c: BACKEND_CHOICES[c],
        key="backend_choice",
        help="Auto: Ollama when one answers at OLLAMA_HOST, else the embedded simulated "
        "Ollama. Several LLM hosts: quorum.toml's [[endpoints]] tables.",
    )
    if choice == "endpoints":
        return _endpoints_section(choice, settings)
    detected: str | None = None
    if choice == "auto":
        kind, detected = _auto_detect()
    else:
        kind = choice
    key_source: str | None = None
    try:
        backend, key_source = KIND_SECTIONS[kind](settings)
    except ValueError as exc:
        st.error(safe.md(safe.ui_words(exc)), icon=":material/error:")
        return BackendSection(choice, None, safe.ui_words(exc), detected, key_source)
    _status_block(backend)
    return BackendSection(choice, backend, None, detected, key_source)


def _auto_detect() -> tuple[str, str]:
    """Auto: Ollama when one answers at $OLLAMA_HOST, else the simulated server; and why."""
    url = ollama_base_url()
    found = detect(url)
    detected = (
        f"Found Ollama {found.version or ''} at {url}"
        if found.reachable
        else f"No Ollama at {url}: using the simulated server"
    )
    st.caption(safe.md(detected))
    return (OLLAMA if found.reachable else SIMULATED), detected


def _simulated_section(settings: Settings) -> tuple[BackendConfig, str | None]:
    return BackendConfig(kind=SIMULATED, sim=_sim_section(settings)), None


def _ollama_section(settings: Settings) -> tuple[BackendConfig, str | None]:
    url = st.text_input(
        "Ollama URL",
        value=ollama_base_url(),
        key="ollama_url",
        help="Default: $OLLAMA_HOST",
    )
    model = st.text_input("Model", value=DEFAULT_MODEL, key="ollama_model")
    backend = BackendConfig(
        kind=OLLAMA,
        base_url=url.strip() or None,
        model=model.strip(),
        server_slots=_slots_input(OLLAMA, settings),
    )
    return backend, None


def _openai_section(settings: Settings) -> tuple[BackendConfig, str | None]:
    """An OpenAI-compatible server, and where its API key came from (None: not set)."""
    env_url = os.environ.get("OPENAI_BASE_URL", "")
    url = st.text_input(
        "Server URL",
        value=redact_url(env_url),
        placeholder="http://host:8000/v1",
        key="openai_url",
    )
    # The field shows $OPENAI_BASE_URL with any password masked; the real URL
    # stays on the server side as long as the field is left as it was.
    if env_url and url.strip() == redact_url(env_url):
        url = env_url
    model = st.text_input("Model", value=DEFAULT_MODEL, key="openai_model")
    key, key_source = settings.openai_api_key.value, settings.openai_api_key.source
    st.caption(
        f"API key: set (from {key_source})"
        if key_source
        else "API key: not set (OPENAI_API_KEY or secrets.toml `openai_api_key`)"
    )
    backend = BackendConfig(
        kind=OPENAI,
        base_url=url.strip() or None,
        model=model.strip(),
        api_key=key,
        server_slots=_slots_input(OPENAI, settings),
    )
    return backend, key_source


# Each registered kind's widgets (tests/backends/test_registry.py checks that every kind has them):
# the backend it configures, and where its API key came from (None: none or not set).
KIND_SECTIONS: dict[str, Callable[[Settings], tuple[BackendConfig, str | None]]] = {
    SIMULATED: _simulated_section,
    OLLAMA: _ollama_section,
    OPENAI: _openai_section,
}


def _slots_input(kind: str, settings: Settings) -> int | None:
    """`auto` (ask the server; Ollama: learn them) or a number; raises ValueError naming the field."""
    if "server" in settings.errors:
        st.error(safe.md(settings.errors["server"]), title="quorum.toml [server] ignored")
    configured = settings.server_slots
    raw = st.text_input(
        "Server slots",
        value="auto" if configured is None else str(configured),
        key=f"{kind}_slots",
        help="How many requests the server runs at once. auto: llama.cpp reports it; "
        "Ollama does not, so Quorum learns them with a short probe before the first run; "
        "type the server's OLLAMA_NUM_PARALLEL here to skip it.",
    )
    return parse_slots_setting(raw)


def _endpoints_section(choice: BackendChoice, settings: Settings) -> BackendSection:
    """The LLM hosts listed in quorum.toml; each one's health is on the Settings page."""
    try:
        settings.check("endpoints")
        endpoints = settings.endpoints
        if not endpoints:
            raise ValueError(f"endpoints: no [[endpoints]] table in {settings.config_path}")
        model = st.text_input("Model", value=DEFAULT_MODEL, key="endpoints_model")
        # The simulated server's settings only matter for the embedded one (no URL).
        embedded = any(e.embedded for e in endpoints)
        sim = _sim_section(settings) if embedded else SimConfig()
        backend = BackendConfig(
            kind=endpoints[0].kind, model=model.strip(), sim=sim, endpoints=endpoints
        )
    except ValueError as exc:
        st.error(safe.md(exc), icon=":material/error:")
        return BackendSection(choice, None, str(exc))
    statuses = endpoint_statuses(backend)
    up = sum(1 for _, status in statuses if status.reachable)
    line = f"{up} of {len(statuses)} endpoints reachable ({settings.config_path}); health and slots on Settings."
    if up:
        st.caption(safe.md(("● " if up == len(statuses) else "◐ ") + line))
    else:
        st.error(safe.md(line), icon=":material/cloud_off:")
    return BackendSection(choice, backend)


def _sim_section(settings: Settings) -> SimConfig:
    names = list(PROFILES)
    profile = st.selectbox(
        "Simulated profile",
        names,
        index=names.index("baseline"),
        key="sim_profile",
        help="\n".join(f"- **{n}**: {p.description}" for n, p in PROFILES.items()),
    )
    st.caption(PROFILES[profile].description)
    slots = st.slider(
        "Server slots (OLLAMA_NUM_PARALLEL)",
        1,
        8,
        value=SimConfig().slots,  # Ollama's own default where the model fits in memory
        key="sim_slots",
        help="How many requests the simulated server runs at once; the rest queue.",
    )
    scale = st.number_input(
        "Time scale",
        min_value=0.001,
        max_value=10.0,
        value=settings.sim_time_scale,
        step=0.05,
        format="%.3f",
        key="sim_time_scale",
        help="Multiplies every simulated duration. 1.0 is real time (a baseline "
        "sequential run then takes ≈ 70 s); 0.1 makes a demo run take a few seconds.",
    )
    st.caption(f"{scale:g}× real time" + (" (real time)" if scale == 1.0 else "; 1.0 = real time"))
    return SimConfig(profile=profile, num_parallel=int(slots), time_scale=float(scale))


def _status_block(backend: BackendConfig) -> None:
    status = probe(backend)
    where = "embedded simulated server" if backend.embedded else redact_url(backend.url())
    if status.reachable:
        models = ", ".join(status.models[:8]) + (" …" if len(status.models) > 8 else "")
        st.caption(
            safe.md(f"● reachable · {where} · version {status.version or 'unknown'}")
            + (f"  \n{safe.md('models: ' + models)}" if models else "")
        )
        hint = backend.spec.missing_model_hint
        if hint and status.models and backend.model not in status.models:
            st.warning(safe.md(f"Model {backend.model} is not on this server; {hint}."))
    else:
        st.error(
            safe.md(f"Server unreachable: {status.error or where}"), icon=":material/cloud_off:"
        )


# --- Snapshot -----------------------------------------------------------------------------


def _snapshot_section(settings: Settings) -> SourceSection:
    kinds = list(SOURCE_LABELS)
    kind: SourceKind | None = st.segmented_control(
        "Source",
        kinds,
        default="scenario",
        format_func=lambda k: SOURCE_LABELS[k],
        required=True,
        key="source_kind",
        bind="query-params",
    )
    kind = kind or "scenario"
    if kind == "scenario":
        names = list(snapshots.SCENARIOS)
        name = st.selectbox(
            "Scenario",
            names,
            index=names.index(DEFAULT_SCENARIO),
            key="scenario_name",
            bind="query-params",
        )
        return SourceSection(SnapshotSource("scenario", scenario=name))
    if kind == "live":
        st.caption("Sampled from this host (psutil) on every refresh.")
        return SourceSection(SnapshotSource("live"))
    if kind == "prometheus":
        prom_source, prom_error = prom_ui.sidebar(settings.config_path)
        if prom_error is not None:
            rejected = (prom_error.field, prom_error.message)
            return SourceSection(SnapshotSource("prometheus", rejected=rejected), str(prom_error))
        return SourceSection(SnapshotSource("prometheus", prometheus=prom_source))
    return _upload_section()


def _upload_section() -> SourceSection:
    uploaded = st.file_uploader(
        "Snapshot JSON",
        type=["json"],
        key="snapshot_upload",
        help="One JSON object with the snapshot fields (see `python -m engine snapshot`).",
    )
    if uploaded is None:
        return SourceSection(SnapshotSource("upload"), "upload a snapshot JSON file")
    try:
        snap = parse_upload(uploaded.getvalue(), uploaded.name)
    except snapshots.SnapshotError as exc:
        st.error(snapshot_error_message(exc), title="Snapshot rejected", icon=":material/error:")
        rejected = (exc.field, exc.message)
        source = SnapshotSource("upload", upload_name=uploaded.name, rejected=rejected)
        return SourceSection(source, str(exc))
    st.caption(safe.md(f"Loaded {uploaded.name} (host {snap.host})"))
    return SourceSection(SnapshotSource("upload", upload=snap, upload_name=uploaded.name))


# --- Analysis (the Advanced expander) -----------------------------------------------------


# The Advanced expander's settings: widget key → (label, default).
ADVANCED_DEFAULTS: dict[str, tuple[str, float | bool]] = {
    "run_quorum": ("Quorum (agents)", 3),
    "run_grace": ("Grace after quorum (s)", 2.0),
    "run_timeout": ("Per-agent timeout (s)", 30.0),
    "run_overlap": ("Overlap consolidation", False),
    "cache_on": ("Result cache", True),
}


def advanced_changes(state: StateConfig) -> list[str]:
    """Labels of the Advanced settings that differ from their defaults (as last set); the
    TTLs' defaults are quorum.toml's [cache] ttl and degraded_ttl."""
    defaults = {
        **ADVANCED_DEFAULTS,
        "cache_ttl": ("Cache TTL (s)", state.ttl_s),
        "cache_degraded_ttl": ("Degraded result TTL (s)", state.degraded_ttl_s),
    }
    return [
        label
        for key, (label, default) in defaults.items()
        if key in st.session_state and st.session_state[key] != default
    ]


def _engine_section(mode: str, default_ttl_s: float) -> EngineSection:
    quorum = st.slider("Quorum (agents)", 1, 5, value=3, key="run_quorum")
    grace = st.number_input(
        "Grace after quorum (s)", 0.0, 120.0, value=2.0, step=0.5, key="run_grace"
    )
    timeout = st.number_input(
        "Per-agent timeout (s)", 0.5, 600.0, value=30.0, step=5.0, key="run_timeout"
    )
    overlap = st.toggle(
        "Overlap consolidation",
        value=False,
        key="run_overlap",
        help="Consolidate as soon as the quorum answered; fold late answers in.",
    )
    cache_on = st.toggle("Result cache", value=True, key="cache_on")
    ttl = st.number_input(
        "Cache TTL (s)", 1.0, 86400.0, value=_clamp_ttl(default_ttl_s), step=30.0, key="cache_ttl",
        help="quorum.toml: [cache] ttl",
    )  # fmt: skip
    settings = RunSettings(
        mode=mode if mode in MODES else "parallel",
        quorum=int(quorum),
        grace_s=float(grace),
        agent_timeout_s=float(timeout),
        overlap=bool(overlap),
    )
    return EngineSection(settings, bool(cache_on), float(ttl))


def _clamp_ttl(seconds: float) -> float:
    return min(max(seconds, 1.0), 86400.0)  # the TTL inputs' range


def _degraded_ttl_section(default: float) -> float:
    ttl = st.number_input(
        "Degraded result TTL (s)",
        1.0,
        86400.0,
        value=_clamp_ttl(default),
        step=15.0,
        key="cache_degraded_ttl",
        help="A result that not every agent answered is cached only this long, so the "
        "next refresh tries again (quorum.toml: [cache] degraded_ttl).",
    )
    return float(ttl)
