"""The dashboard's settings from the environment and quorum.toml.

Environment variables pre-select what the sidebar shows ($QUORUM_BACKEND,
$QUORUM_SIM_TIME_SCALE); quorum.toml ($QUORUM_ROSTER) holds the roster and the [cache]
table. Nothing here draws a widget.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.run.agents import DEFAULT_ROSTER, Roster, RosterError, load_roster
from engine.store.state import StateConfig, cache_section, cache_url
from ui.context import BACKEND_CHOICES, BackendChoice

REPO_ROOT = Path(__file__).resolve().parent.parent
ROSTER_FILE = REPO_ROOT / "quorum.toml"
DEFAULT_TIME_SCALE = 0.1


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


def load_roster_safely(path: Path) -> tuple[Roster, str | None]:
    """The roster from `path` if it exists; the default and a message if it is wrong."""
    if not path.is_file():
        return DEFAULT_ROSTER, None
    try:
        return load_roster(path), None
    except RosterError as exc:
        return DEFAULT_ROSTER, str(exc)


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
