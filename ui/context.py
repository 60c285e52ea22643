"""The `Context` record: what the sidebar decided on the last full run.

app.py draws the sidebar once per full run (ui.sidebar), which leaves a frozen `Context`
in session state; pages and their fragments read it with `context()`, so a fragment rerun
(an auto-refresh tick) uses exactly what the sidebar last said without redrawing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from engine.backends.registry import BACKENDS
from engine.run.agents import DEFAULT_ROSTER, Roster
from engine.run.runner import RunSettings
from engine.service import BackendConfig
from engine.store.base import DEFAULT_DEGRADED_TTL_S, DEFAULT_LEASE_S
from engine.store.state import StateConfig
from ui import navigation
from ui.sources import SnapshotSource

# "auto", a registered backend kind (engine/backends/registry.py), or "endpoints".
BackendChoice = str
BACKEND_CHOICES: dict[BackendChoice, str] = {
    "auto": "Auto: Ollama, else simulated",
    **{kind.name: kind.label for kind in BACKENDS.values()},
    "endpoints": "Several LLM hosts",
}
CONTEXT_KEY = "quorum_context"


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


def context() -> Context:
    """The sidebar's decisions (pages call this at their top level, never in a fragment).

    A page file that runs without app.py (a fresh server's first request for a sub-page
    URL, see `navigation.reroute_through_app`) is rerun through app.py, which draws the
    page config, the sidebar and the navigation first."""
    if not navigation.entrypoint_ran():
        navigation.reroute_through_app()
    ctx = st.session_state.get(CONTEXT_KEY)
    if not isinstance(ctx, Context):  # app.py draws the sidebar before any page runs
        raise RuntimeError("ui.context.context(): the sidebar has not been drawn this session")
    return ctx
