"""The dashboard's settings: `engine.settings.Settings` with the dashboard's own secrets.

quorum.toml is located as for the CLI and the API ($QUORUM_CONFIG, else the repository
root's); environment variables pre-select what the sidebar shows ($QUORUM_BACKEND,
$QUORUM_SIM_TIME_SCALE); secrets come from the environment, then `st.secrets` (which
reads `.streamlit/secrets.toml` here or in the home directory). Nothing here draws a widget.
"""

from __future__ import annotations

import tomllib
from typing import Any

import streamlit as st

from engine.settings import Settings
from engine.store.state import StateConfig
from ui.context import BACKEND_CHOICES, BackendChoice


def dashboard_secrets() -> dict[str, Any]:
    """`st.secrets` as a table; {} when there is no secrets.toml at all (st.secrets raises)."""
    try:
        return dict(st.secrets.to_dict())
    except (FileNotFoundError, KeyError, tomllib.TOMLDecodeError, st.errors.StreamlitAPIException):
        return {}


def current() -> Settings:
    """The settings now (read on every run, so an edited quorum.toml applies on the next)."""
    return Settings.load(secrets=dashboard_secrets())


def default_choice(settings: Settings) -> BackendChoice:
    """$QUORUM_BACKEND pre-selects the backend (tests and demos pin `simulated`)."""
    raw = settings.dashboard_backend
    return raw if raw in BACKEND_CHOICES else "auto"


def cache_state(settings: Settings) -> tuple[StateConfig, str | None]:
    """quorum.toml's [cache] with $QUORUM_CACHE_URL, and an error message; a bad [cache]
    table or URL leaves the dashboard on its disk cache with the default numbers."""
    try:
        return settings.state_config(), None
    except ValueError as exc:
        return StateConfig(), str(exc)
