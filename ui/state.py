"""The sidebar and everything it decides: backend, run settings, snapshot source.

The sidebar is drawn once per full run (by app.py) and leaves a frozen `Context` in
session state; pages and their fragments read it from there, so a fragment rerun (an
auto-refresh tick) uses exactly what the sidebar last said without redrawing it.

Shared resources (`st.cache_resource`, one per process): the result cache per
(directory, TTL), the history file, and an `Engine` per (backend config, roster, cache,
history). Every browser session therefore shares one engine, one disk cache and the
cache's single-flight, so ten tabs watching the same host cause one analysis, not ten.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from engine import snapshot as snapshots
from engine.agents import DEFAULT_MODEL, DEFAULT_ROSTER, Roster, RosterError, load_roster
from engine.backends.base import ServerStatus
from engine.backends.http import redact_url
from engine.backends.ollama import ollama_base_url
from engine.cache import DEFAULT_TTL_S
from engine.endpoints import endpoints_section
from engine.prometheus import PromReading
from engine.records import AnalysisResult
from engine.runner import MODES, RunSettings
from engine.service import BackendConfig, BackendKind, Engine, default_data_dir
from engine.simulated import PROFILES, SimConfig
from engine.slots import parse_slots_setting, slots_from_config
from engine.state import (
    DEFAULT_DEGRADED_TTL_S,
    DEFAULT_LEASE_S,
    HistoryStore,
    ResultStore,
    StateConfig,
    cache_section,
    cache_url,
    open_cache,
    open_history,
)
from engine.timeline import projection_scale
from ui import prometheus as prom_ui
from ui import safe

REPO_ROOT = Path(__file__).resolve().parent.parent
ROSTER_FILE = REPO_ROOT / "quorum.toml"
MAX_UPLOAD_BYTES = 1 * 2**20  # a snapshot is a few hundred bytes; anything huge is a mistake
PROBE_TTL_S = 30  # how long a server-status probe is reused
DEFAULT_SCENARIO = "cpu-saturation"
DEFAULT_TIME_SCALE = 0.1

BackendChoice = Literal["auto", "simulated", "ollama", "openai", "endpoints"]
BACKEND_CHOICES: dict[BackendChoice, str] = {
    "auto": "Auto: Ollama, else simulated",
    "simulated": "Simulated Ollama",
    "ollama": "Ollama",
    "openai": "OpenAI-compatible",
    "endpoints": "Several LLM hosts",
}
SourceKind = Literal["scenario", "live", "upload", "prometheus"]
SOURCE_LABELS: dict[SourceKind, str] = {
    "scenario": "Scenario",
    "live": "Live host",
    "upload": "Upload JSON",
    "prometheus": "Prometheus",
}
_CONTEXT_KEY = "quorum_context"


@dataclass(frozen=True)
class SnapshotSource:
    kind: SourceKind = "scenario"
    scenario: str = DEFAULT_SCENARIO
    upload: snapshots.Snapshot | None = None  # already validated in the sidebar
    upload_name: str | None = None
    rejected: tuple[str, str] | None = None  # (field, message) of a bad upload or server
    prometheus: prom_ui.PromSource | None = None

    @property
    def label(self) -> str:
        if self.kind == "prometheus":
            return self.prometheus.label if self.prometheus else "Prometheus"
        if self.kind == "scenario":
            return f"scenario {self.scenario}"
        if self.kind == "upload":
            return f"uploaded {self.upload_name or 'file'}"
        return "live host"

    def read(self) -> snapshots.Snapshot:
        """A fresh snapshot (the live host is sampled again on every call)."""
        return self.read_detailed()[0]

    def read_detailed(self) -> tuple[snapshots.Snapshot, PromReading | None]:
        """A fresh snapshot and, from Prometheus, the reading behind it (warnings, time)."""
        if self.kind == "prometheus":
            if self.rejected is not None:
                raise snapshots.SnapshotError(*self.rejected)
            if self.prometheus is None:
                raise snapshots.SnapshotError("prometheus", "choose a Prometheus server first")
            reading = self.prometheus.read()
            return reading.snapshot, reading
        return self._read(), None

    def _read(self) -> snapshots.Snapshot:
        if self.kind == "live":
            return snapshots.live()
        if self.kind == "upload":
            if self.rejected is not None:
                raise snapshots.SnapshotError(*self.rejected)
            if self.upload is None:
                raise snapshots.SnapshotError("file", "upload a snapshot JSON file first")
            return self.upload
        return snapshots.scenario(self.scenario)


@dataclass(frozen=True)
class Context:
    """What the sidebar decided on the last full run."""

    choice: BackendChoice
    backend: BackendConfig | None  # None when the backend settings are invalid
    backend_error: str | None
    settings: RunSettings
    source: SnapshotSource
    source_error: str | None
    cache_enabled: bool
    ttl_s: float
    data_dir: Path
    roster: Roster = DEFAULT_ROSTER
    roster_path: Path | None = None
    roster_error: str | None = None
    detected: str | None = None  # what Auto found, for display
    api_key_source: str | None = field(default=None)
    degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S
    # Redis URL for shared state ($QUORUM_CACHE_URL or quorum.toml [cache] url); it may
    # hold a password, so it is never shown (`state_where` is the redacted form).
    cache_url: str | None = field(default=None, repr=False)
    lease_s: float = DEFAULT_LEASE_S
    state_error: str | None = None  # a bad [cache] table: the dashboard stays on disk

    @property
    def state_where(self) -> str:
        return StateConfig(url=self.cache_url).where if self.cache_url else "disk"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def history_path(self) -> Path:
        return self.data_dir / "history.jsonl"


# --- environment and secrets --------------------------------------------------------------


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def default_choice() -> BackendChoice:
    """$QUORUM_BACKEND pre-selects the backend (tests and demos pin `simulated`)."""
    raw = os.environ.get("QUORUM_BACKEND", "auto").strip().lower()
    return raw if raw in BACKEND_CHOICES else "auto"


def default_time_scale() -> float:
    value = _env_float("QUORUM_SIM_TIME_SCALE", DEFAULT_TIME_SCALE)
    return value if 0 < value <= 10 else DEFAULT_TIME_SCALE


def roster_file() -> Path:
    """quorum.toml in the repository root, or $QUORUM_ROSTER."""
    env = os.environ.get("QUORUM_ROSTER")
    return Path(env).expanduser() if env else ROSTER_FILE


def openai_api_key() -> tuple[str | None, str | None]:
    """(key, where it came from). The key is passed to the backend and nowhere else."""
    env = os.environ.get("OPENAI_API_KEY")
    if env:
        return env, "OPENAI_API_KEY"
    try:
        value = st.secrets.get("openai_api_key")
    except (FileNotFoundError, KeyError, tomllib.TOMLDecodeError, st.errors.StreamlitAPIException):
        # st.secrets raises when there is no secrets.toml at all; that just means "no key".
        return None, None
    if isinstance(value, str) and value:
        return value, "secrets.toml"
    return None, None


def load_roster_safely(path: Path) -> tuple[Roster, str | None]:
    """The roster from `path` if it exists; the default and a message if it is wrong."""
    if not path.is_file():
        return DEFAULT_ROSTER, None
    try:
        return load_roster(path), None
    except RosterError as exc:
        return DEFAULT_ROSTER, str(exc)


def parse_upload(data: bytes, name: str) -> snapshots.Snapshot:
    """An uploaded snapshot, validated; SnapshotError names the bad field."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise snapshots.SnapshotError(
            "file", f"too large ({len(data):,} bytes; a snapshot is a small JSON object)"
        )
    return snapshots.parse_json(data, source=f"upload:{safe.clean(name, limit=80)}")


def snapshot_error_message(exc: snapshots.SnapshotError) -> str:
    """Markdown for a rejected snapshot: which field, and what is wrong with it."""
    return f"Field **{safe.md(exc.field)}**: {safe.md(exc.message)}"


# --- shared resources ---------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def shared_cache(
    directory: str,
    ttl_s: float,
    degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S,
    url: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> ResultStore:
    """The result cache: on disk in `directory`, or in Redis when `url` is set."""
    config = StateConfig(url=url, ttl_s=ttl_s, degraded_ttl_s=degraded_ttl_s, lease_s=lease_s)
    return open_cache(config, directory)


@st.cache_resource(show_spinner=False)
def shared_history(path: str, url: str | None = None) -> HistoryStore:
    return open_history(StateConfig(url=url), path)


def _backend_hash(backend: BackendConfig) -> int:
    return hash(backend)  # frozen dataclass; the key is hashed, never stored or shown


def _roster_hash(roster: Roster) -> str:
    return roster.fingerprint()


@st.cache_resource(
    show_spinner=False,
    max_entries=32,
    hash_funcs={BackendConfig: _backend_hash, Roster: _roster_hash},
)
def _engine(
    backend: BackendConfig,
    roster: Roster,
    cache_dir: str | None,
    ttl_s: float,
    history: str,
    degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S,
    url: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
) -> Engine:
    cache = shared_cache(cache_dir, ttl_s, degraded_ttl_s, url, lease_s) if cache_dir else None
    return Engine(backend, roster=roster, cache=cache, history=shared_history(history, url))


def engine_for(ctx: Context, backend: BackendConfig | None = None) -> Engine | None:
    """The shared engine for the context's (or the given) backend; None if it is invalid."""
    chosen = backend or ctx.backend
    if chosen is None:
        return None
    cache_dir = str(ctx.cache_dir) if ctx.cache_enabled else None
    return _engine(
        chosen, ctx.roster, cache_dir, ctx.ttl_s, str(ctx.history_path),
        ctx.degraded_ttl_s, ctx.cache_url, ctx.lease_s,
    )  # fmt: skip


def cache_for(ctx: Context) -> ResultStore:
    """The shared cache for this data dir and TTL (even when runs do not use it)."""
    return shared_cache(
        str(ctx.cache_dir), ctx.ttl_s, ctx.degraded_ttl_s, ctx.cache_url, ctx.lease_s
    )


def history_for(ctx: Context) -> HistoryStore:
    return shared_history(str(ctx.history_path), ctx.cache_url)


def state_settings(path: Path) -> tuple[dict[str, float], str | None, str | None]:
    """quorum.toml's [cache] numbers, the cache URL ($QUORUM_CACHE_URL first) and an error
    message; a bad [cache] table or URL leaves the dashboard on its disk cache."""
    try:
        section = cache_section(path)
        url = cache_url(section)
        StateConfig(url=url)  # validates the URL's scheme
    except ValueError as exc:
        return {}, None, str(exc)
    numbers = {k: float(v) for k, v in section.items() if k != "url"}
    return numbers, url, None


def state_banner(engine: Engine) -> None:
    """A banner while the cache or history cannot be used: runs go on, uncached."""
    cache_problem = engine.cache.degraded if engine.cache is not None else None
    history_problem = engine.history.degraded if engine.history is not None else None
    problem = cache_problem or history_problem
    if problem is None:
        return
    shared = engine.cache is not None and engine.cache.stats().kind == "redis"
    st.warning(
        safe.md(problem),
        title="Shared state (Redis) unavailable: analyses run uncached and are not shared; "
        "this recovers by itself when Redis is back"
        if shared
        else "Result cache or history unavailable: analyses run uncached",
        icon=":material/cloud_off:",
    )


def with_slots(backend: BackendConfig, slots: int) -> BackendConfig:
    """The same simulated backend with `slots` server slots (OLLAMA_NUM_PARALLEL)."""
    return replace(backend, sim=replace(backend.sim, num_parallel=slots))


@st.cache_data(
    ttl=PROBE_TTL_S, show_spinner=False, max_entries=16, hash_funcs={BackendConfig: _backend_hash}
)
def probe(backend: BackendConfig) -> ServerStatus:
    """The server's status, reused for PROBE_TTL_S so reruns do not hammer it. Never raises."""
    try:
        return Engine(backend).server_status()
    except Exception as exc:  # a status display must not take the page down
        return ServerStatus(reachable=False, error=f"{type(exc).__name__}: {exc}")


def detect(url: str) -> ServerStatus:
    """Auto: is there an Ollama at `url`? A short timeout keeps first load snappy."""
    return probe(BackendConfig(kind="ollama", base_url=url, timeout_s=2.0))


# --- the sidebar --------------------------------------------------------------------------


def context() -> Context:
    """The sidebar's decisions (pages call this; app.py draws the sidebar first)."""
    if PagesManager.uses_pages_directory:
        # Streamlit's old pages-directory mode ran this page file without app.py: a
        # process whose first request opened a sub-page (e.g. /compare) before any
        # `st.navigation` call has the flag still set because `pages/` exists. Clear it
        # as `st.navigation` would and rerun, so app.py (page config, sidebar,
        # navigation) runs; the page hash is the same in both modes, so the user
        # lands on the page they asked for.
        PagesManager.uses_pages_directory = False
        st.rerun()
    ctx = st.session_state.get(_CONTEXT_KEY)
    if isinstance(ctx, Context):
        return ctx
    return render_sidebar()


def render_sidebar() -> Context:
    with st.sidebar:
        st.markdown("### Backend")
        choice, backend, backend_error, detected, key_source = _backend_section()
        st.markdown("### Snapshot")
        source, source_error = _snapshot_section()
        st.markdown("### Analysis")
        mode = st.segmented_control(
            "Mode", list(MODES), default="parallel", required=True, key="run_mode",
            bind="query-params",
        )  # fmt: skip
        numbers, url, state_error = state_settings(roster_file())
        changed = advanced_changes(numbers)
        label = "Advanced" + (f" · {len(changed)} changed" if changed else "")
        with st.expander(label, expanded=False, key="advanced", icon=":material/tune:"):
            settings, cache_enabled, ttl_s = _engine_section(mode or "parallel")
            degraded_ttl_s = _degraded_ttl_section(numbers)
            if changed:
                st.caption("Changed from the defaults: " + ", ".join(changed) + ".")
        if state_error:
            st.error(safe.md(state_error), title="quorum.toml [cache] ignored: cache on disk")
    roster_path = roster_file()
    roster, roster_error = load_roster_safely(roster_path)
    ctx = Context(
        choice=choice,
        backend=backend,
        backend_error=backend_error,
        settings=settings,
        source=source,
        source_error=source_error,
        cache_enabled=cache_enabled,
        ttl_s=ttl_s,
        data_dir=default_data_dir(),
        roster=roster,
        roster_path=roster_path,
        roster_error=roster_error,
        detected=detected,
        api_key_source=key_source,
        degraded_ttl_s=degraded_ttl_s,
        cache_url=url,
        lease_s=numbers.get("lease", DEFAULT_LEASE_S),
        state_error=state_error,
    )
    st.session_state[_CONTEXT_KEY] = ctx
    return ctx


def _backend_section() -> tuple[
    BackendChoice, BackendConfig | None, str | None, str | None, str | None
]:
    choices = list(BACKEND_CHOICES)
    choice: BackendChoice = st.selectbox(
        "Backend",
        choices,
        index=choices.index(default_choice()),
        format_func=lambda c: BACKEND_CHOICES[c],
        key="backend_choice",
        help="Auto: Ollama when one answers at OLLAMA_HOST, else the embedded simulated "
        "Ollama. Several LLM hosts: quorum.toml's [[endpoints]] tables.",
    )
    kind: BackendKind
    detected: str | None = None
    if choice == "endpoints":
        return _endpoints_section(choice)
    if choice == "auto":
        url = ollama_base_url()
        found = detect(url)
        kind = "ollama" if found.reachable else "simulated"
        detected = (
            f"Found Ollama {found.version or ''} at {url}"
            if found.reachable
            else f"No Ollama at {url}: using the simulated server"
        )
        st.caption(safe.md(detected))
    else:
        kind = choice

    key_source: str | None = None
    try:
        if kind == "simulated":
            backend = BackendConfig(kind="simulated", sim=_sim_section())
        elif kind == "ollama":
            url = st.text_input(
                "Ollama URL",
                value=ollama_base_url(),
                key="ollama_url",
                help="Default: $OLLAMA_HOST",
            )
            model = st.text_input("Model", value=DEFAULT_MODEL, key="ollama_model")
            backend = BackendConfig(
                kind="ollama",
                base_url=url.strip() or None,
                model=model.strip(),
                server_slots=_slots_input("ollama"),
            )
        else:
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
            key, key_source = openai_api_key()
            st.caption(
                f"API key: set (from {key_source})"
                if key_source
                else "API key: not set (OPENAI_API_KEY or secrets.toml `openai_api_key`)"
            )
            backend = BackendConfig(
                kind="openai",
                base_url=url.strip() or None,
                model=model.strip(),
                api_key=key,
                server_slots=_slots_input("openai"),
            )
    except ValueError as exc:
        st.error(safe.md(safe.ui_words(exc)), icon=":material/error:")
        return choice, None, safe.ui_words(exc), detected, key_source
    _status_block(backend)
    return choice, backend, None, detected, key_source


def _slots_input(kind: str) -> int | None:
    """`auto` (ask the server; Ollama: learn them) or a number; raises ValueError naming the field."""
    try:
        configured = slots_from_config(roster_file())
    except ValueError as exc:
        st.error(safe.md(exc), title="quorum.toml [server] ignored")
        configured = None
    raw = st.text_input(
        "Server slots",
        value="auto" if configured is None else str(configured),
        key=f"{kind}_slots",
        help="How many requests the server runs at once. auto: llama.cpp reports it; "
        "Ollama does not, so Quorum learns them with a short probe before the first run; "
        "type the server's OLLAMA_NUM_PARALLEL here to skip it.",
    )
    return parse_slots_setting(raw)


def _endpoints_section(
    choice: BackendChoice,
) -> tuple[BackendChoice, BackendConfig | None, str | None, str | None, str | None]:
    """The LLM hosts listed in quorum.toml; each one's health is on the Settings page."""
    try:
        endpoints = endpoints_section(roster_file())
        if not endpoints:
            raise ValueError(f"endpoints: no [[endpoints]] table in {roster_file()}")
        model = st.text_input("Model", value=DEFAULT_MODEL, key="endpoints_model")
        # The simulated server's settings only matter for the embedded one (no URL).
        embedded = any(e.kind == "simulated" and e.url is None for e in endpoints)
        sim = _sim_section() if embedded else SimConfig()
        backend = BackendConfig(
            kind=endpoints[0].kind, model=model.strip(), sim=sim, endpoints=endpoints
        )
    except ValueError as exc:
        st.error(safe.md(exc), icon=":material/error:")
        return choice, None, str(exc), None, None
    statuses = endpoint_statuses(backend)
    up = sum(1 for _, status in statuses if status.reachable)
    line = f"{up} of {len(statuses)} endpoints reachable ({roster_file()}); health and slots on Settings."
    if up:
        st.caption(safe.md(("● " if up == len(statuses) else "◐ ") + line))
    else:
        st.error(safe.md(line), icon=":material/cloud_off:")
    return choice, backend, None, None, None


@st.cache_data(
    ttl=PROBE_TTL_S, show_spinner=False, max_entries=16, hash_funcs={BackendConfig: _backend_hash}
)
def endpoint_statuses(backend: BackendConfig) -> list[tuple[str, ServerStatus]]:
    """Each LLM host's status, reused for PROBE_TTL_S. Never raises."""
    try:
        return Engine(backend).endpoint_statuses()
    except Exception as exc:  # a status display must not take the page down
        failed = ServerStatus(reachable=False, error=f"{type(exc).__name__}: {exc}")
        return [(url, failed) for url in backend.url().split(", ")]


def _sim_section() -> SimConfig:
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
        value=default_time_scale(),
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
    embedded = backend.kind == "simulated" and not backend.endpoints
    where = "embedded simulated server" if embedded else redact_url(backend.url())
    if status.reachable:
        models = ", ".join(status.models[:8]) + (" …" if len(status.models) > 8 else "")
        st.caption(
            safe.md(f"● reachable · {where} · version {status.version or 'unknown'}")
            + (f"  \n{safe.md('models: ' + models)}" if models else "")
        )
        if backend.kind == "ollama" and status.models and backend.model not in status.models:
            st.warning(safe.md(f"Model {backend.model} is not on this server; pull it first."))
    else:
        st.error(
            safe.md(f"Server unreachable: {status.error or where}"), icon=":material/cloud_off:"
        )


def _snapshot_section() -> tuple[SnapshotSource, str | None]:
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
        return SnapshotSource("scenario", scenario=name), None
    if kind == "live":
        st.caption("Sampled from this host (psutil) on every refresh.")
        return SnapshotSource("live"), None
    if kind == "prometheus":
        prom_source, prom_error = prom_ui.sidebar(roster_file())
        if prom_error is not None:
            rejected = (prom_error.field, prom_error.message)
            return SnapshotSource("prometheus", rejected=rejected), str(prom_error)
        return SnapshotSource("prometheus", prometheus=prom_source), None
    uploaded = st.file_uploader(
        "Snapshot JSON",
        type=["json"],
        key="snapshot_upload",
        help="One JSON object with the snapshot fields (see `python -m engine snapshot`).",
    )
    if uploaded is None:
        return SnapshotSource("upload"), "upload a snapshot JSON file"
    try:
        snap = parse_upload(uploaded.getvalue(), uploaded.name)
    except snapshots.SnapshotError as exc:
        st.error(snapshot_error_message(exc), title="Snapshot rejected", icon=":material/error:")
        rejected = (exc.field, exc.message)
        return SnapshotSource("upload", upload_name=uploaded.name, rejected=rejected), str(exc)
    st.caption(safe.md(f"Loaded {uploaded.name} (host {snap.host})"))
    return SnapshotSource("upload", upload=snap, upload_name=uploaded.name), None


# The Advanced expander's settings: widget key → (label, default).
ADVANCED_DEFAULTS: dict[str, tuple[str, float | bool]] = {
    "run_quorum": ("Quorum (agents)", 3),
    "run_grace": ("Grace after quorum (s)", 2.0),
    "run_timeout": ("Per-agent timeout (s)", 30.0),
    "run_overlap": ("Overlap consolidation", False),
    "cache_on": ("Result cache", True),
    "cache_ttl": ("Cache TTL (s)", DEFAULT_TTL_S),
}


def advanced_changes(numbers: dict[str, float]) -> list[str]:
    """Labels of the Advanced settings that differ from their defaults (as last set)."""
    defaults = {
        **ADVANCED_DEFAULTS,
        "cache_degraded_ttl": (
            "Degraded result TTL (s)",
            numbers.get("degraded_ttl", DEFAULT_DEGRADED_TTL_S),
        ),
    }
    return [
        label
        for key, (label, default) in defaults.items()
        if key in st.session_state and st.session_state[key] != default
    ]


def _engine_section(mode: str) -> tuple[RunSettings, bool, float]:
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
        "Cache TTL (s)", 1.0, 86400.0, value=DEFAULT_TTL_S, step=30.0, key="cache_ttl"
    )
    settings = RunSettings(
        mode=mode if mode in MODES else "parallel",
        quorum=int(quorum),
        grace_s=float(grace),
        agent_timeout_s=float(timeout),
        overlap=bool(overlap),
    )
    return settings, bool(cache_on), float(ttl)


def _degraded_ttl_section(numbers: dict[str, float]) -> float:
    default = numbers.get("degraded_ttl", DEFAULT_DEGRADED_TTL_S)
    ttl = st.number_input(
        "Degraded result TTL (s)",
        1.0,
        86400.0,
        value=min(max(default, 1.0), 86400.0),
        step=15.0,
        key="cache_degraded_ttl",
        help="A result that not every agent answered is cached only this long, so the "
        "next refresh tries again (quorum.toml: [cache] degraded_ttl).",
    )
    return float(ttl)


# --- live page helpers --------------------------------------------------------------------

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


def note_run(result: AnalysisResult, chosen_s: int) -> bool:
    """Remember a fresh run's wall time; True when the armed interval no longer fits it."""
    if result.cache.hit:
        return False
    st.session_state[_LAST_RUN_KEY] = result.execution_time_s
    interval, _ = stretch_interval(chosen_s, result.execution_time_s)
    armed = st.session_state.get(_ARMED_KEY, interval)
    return bool(interval != armed)


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


def dashboard_url() -> str | None:
    """This dashboard's address as the browser sees it, for run links (`?run=<id>`)."""
    url = st.context.url
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}" if scheme and host else None
