"""Shared resources (`st.cache_resource`, one per process) and secrets.

The result cache per (directory, TTL), the history file, and an `Engine` per (backend
config, roster, cache, history). Every browser session therefore shares one engine, one
disk cache and the cache's single-flight, so ten tabs watching the same host cause one
analysis, not ten. Server probes are `st.cache_data` for PROBE_TTL_S. Settings and secrets
are read in ui/config.py (engine/settings.py); the OpenAI API key goes to the backend only.
"""

from __future__ import annotations

import streamlit as st

from engine.backends.base import ServerStatus
from engine.run.agents import Roster
from engine.service import BackendConfig, Engine
from engine.store.base import DEFAULT_DEGRADED_TTL_S, DEFAULT_LEASE_S, HistoryStore, ResultStore
from engine.store.state import StateConfig, open_cache, open_history
from ui import safe
from ui.context import Context

PROBE_TTL_S = 30  # how long a server-status probe is reused


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
