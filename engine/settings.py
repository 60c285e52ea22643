"""Settings: what quorum.toml, the environment and the dashboard's secrets say, read once.

One locator for quorum.toml, used by the CLI, the API and the dashboard alike:
`--config FILE` (`--roster` is its old name), else $QUORUM_CONFIG, else $QUORUM_ROSTER (the
old name: it still works and warns once), else `quorum.toml` in the repository root (the
default the README documents). The current directory is never searched: the same command
reads the same file wherever it is started. A file given on the command line must exist;
one named by the environment or the default may be absent (then every table is empty).

Each table is parsed by the module that owns its meaning; a table that is wrong leaves its
defaults here and its one-line, field-level message in `errors`, so the dashboard can show
it and carry on while the CLI stops with it (`check`), exactly where it would use it.
Secrets (API keys, tokens, webhook URLs) come from the environment first, then the
secrets table (the dashboard's `st.secrets`, else `.streamlit/secrets.toml` under `cwd`,
as Streamlit itself looks for it) and are kept out of `repr`.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.backends.endpoints import EndpointSpec, endpoints_section
from engine.backends.server_slots import slots_from_config
from engine.run.agents import DEFAULT_ROSTER, Roster, RosterError, load_roster
from engine.sources import prometheus
from engine.store.base import DEFAULT_DEGRADED_TTL_S, DEFAULT_LEASE_S, DEFAULT_TTL_S
from engine.store.state import StateConfig, cache_section, cache_url

CONFIG_ENV = "QUORUM_CONFIG"
LEGACY_CONFIG_ENV = "QUORUM_ROSTER"  # the file was called the roster before it held five tables
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "quorum.toml"
SECRETS_FILE = Path(".streamlit/secrets.toml")  # under the working directory, as Streamlit reads it
PROMETHEUS_URL_ENV = "QUORUM_PROMETHEUS_URL"
DASHBOARD_URL_ENV = "QUORUM_DASHBOARD_URL"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"
DEFAULT_TIME_SCALE = 0.1  # the dashboard's simulated time scale: a demo run in a few seconds
# secret → (environment variable, key in secrets.toml)
SECRET_NAMES = {
    "openai_api_key": ("OPENAI_API_KEY", "openai_api_key"),
    "prometheus_token": (prometheus.TOKEN_ENV, prometheus.SECRETS_KEY),
    "api_token": ("QUORUM_API_TOKEN", "api_token"),
    "slack_webhook_url": ("QUORUM_SLACK_WEBHOOK_URL", "slack_webhook_url"),
    "webhook_url": ("QUORUM_WEBHOOK_URL", "webhook_url"),
}
# The tables in the order the CLI checks them (the order it has always failed in).
SECTIONS = ("server", "endpoints", "agents", "cache", "prometheus")

_warned: set[str] = set()  # deprecated names already warned about in this process


def _warn_once(name: str, message: str) -> None:
    """One line on stderr per process: a dashboard rerun or an API worker must not repeat it."""
    if name not in _warned:
        _warned.add(name)
        print(f"warning: {message}", file=sys.stderr, flush=True)


class SettingsError(ValueError):
    """A setting is wrong; str() is its one field-level line."""


@dataclass(frozen=True)
class Secret:
    value: str | None = field(default=None, repr=False)
    source: str | None = None  # the environment variable's name, or "secrets.toml"


def locate(
    env: Mapping[str, str], explicit: str | Path | None = None, cwd: Path | None = None
) -> tuple[Path, str]:
    """quorum.toml and what chose it: `--config`, $QUORUM_CONFIG, $QUORUM_ROSTER or the default."""

    def where(name: str | Path) -> Path:
        # Relative to `cwd` when one is given, else to the process's (as the user typed it:
        # messages name the file as given).
        path = Path(name).expanduser()
        return cwd / path if cwd is not None else path

    if explicit:
        return where(explicit), "--config"
    for name in (CONFIG_ENV, LEGACY_CONFIG_ENV):
        value = env.get(name, "").strip()
        if value:
            if name == LEGACY_CONFIG_ENV:
                _warn_once(name, f"${LEGACY_CONFIG_ENV} is deprecated: use ${CONFIG_ENV}")
            return where(value), f"${name}"
    return DEFAULT_CONFIG_FILE, "default"


def read_secrets(path: Path) -> dict[str, Any]:
    """secrets.toml as a table; a missing or unreadable file is an empty one."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _secret(name: str, env: Mapping[str, str], table: Mapping[str, Any]) -> Secret:
    env_name, key = SECRET_NAMES[name]
    value = env.get(env_name, "").strip()
    if value:
        return Secret(value, env_name)
    raw = table.get(key)
    if isinstance(raw, str) and raw.strip():
        return Secret(raw.strip(), "secrets.toml")
    return Secret()


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    """What the file, the environment and the secrets say; the command line and the
    sidebar then override single values (`state_config`, the run options)."""

    config_path: Path = DEFAULT_CONFIG_FILE
    config_source: str = "default"  # --config, $QUORUM_CONFIG, $QUORUM_ROSTER or default
    roster: Roster = DEFAULT_ROSTER
    server_slots: int | None = None  # [server] slots; None: auto
    endpoints: tuple[EndpointSpec, ...] = ()
    cache_url: str | None = field(default=None, repr=False)  # may hold a password
    cache_ttl_s: float = DEFAULT_TTL_S
    cache_degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S
    cache_lease_s: float = DEFAULT_LEASE_S
    prometheus: prometheus.PromSettings = field(default_factory=prometheus.PromSettings)
    prometheus_url: str | None = field(default=None, repr=False)  # may carry userinfo
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    dashboard_backend: str = "auto"  # $QUORUM_BACKEND: the sidebar's first choice
    sim_time_scale: float = DEFAULT_TIME_SCALE  # $QUORUM_SIM_TIME_SCALE, for the dashboard
    openai_api_key: Secret = field(default_factory=Secret)
    prometheus_token: Secret = field(default_factory=Secret)
    api_token: Secret = field(default_factory=Secret)
    slack_webhook_url: Secret = field(default_factory=Secret)
    webhook_url: Secret = field(default_factory=Secret)
    errors: Mapping[str, str] = field(default_factory=dict)  # table → its one-line error

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] = os.environ,
        cwd: Path | None = None,
        secrets: Mapping[str, Any] | None = None,
        *,
        config: str | Path | None = None,
    ) -> Settings:
        """Everything, from `config` (the command line's file) or the located quorum.toml,
        `env` and `secrets` (None: `.streamlit/secrets.toml` under `cwd`). Never raises
        for a wrong table: see `errors` and `check`."""
        path, source = locate(env, config, cwd)
        if config and not path.is_file():
            # Named on the command line: a typo must not silently mean "no settings".
            missing = f"{path}: cannot read (No such file or directory)"
            return cls(config_path=path, config_source=source,
                       errors=dict.fromkeys(SECTIONS, missing))  # fmt: skip
        table = secrets if secrets is not None else read_secrets((cwd or Path.cwd()) / SECRETS_FILE)
        values, errors = _tables(path, env)
        scale = _float_env(env, "QUORUM_SIM_TIME_SCALE", DEFAULT_TIME_SCALE)
        return cls(
            config_path=path,
            config_source=source,
            **values,
            prometheus_url=env.get(PROMETHEUS_URL_ENV) or None,
            dashboard_url=env.get(DASHBOARD_URL_ENV) or DEFAULT_DASHBOARD_URL,
            dashboard_backend=env.get("QUORUM_BACKEND", "auto").strip().lower() or "auto",
            sim_time_scale=scale if 0 < scale <= 10 else DEFAULT_TIME_SCALE,
            openai_api_key=_secret("openai_api_key", env, table),
            prometheus_token=_secret("prometheus_token", env, table),
            api_token=_secret("api_token", env, table),
            slack_webhook_url=_secret("slack_webhook_url", env, table),
            webhook_url=_secret("webhook_url", env, table),
            errors=errors,
        )

    def check(self, *sections: str) -> None:
        """Raise the first error of `sections` (every table when none is named)."""
        for name in sections or SECTIONS:
            if name in self.errors:
                raise SettingsError(self.errors[name])

    def state_config(
        self, ttl_s: float | None = None, degraded_ttl_s: float | None = None
    ) -> StateConfig:
        """The cache settings: the given TTLs (the command line's), else the file's; the URL
        from $QUORUM_CACHE_URL, else the file. ValueError names the field."""
        self.check("cache")
        return StateConfig(
            url=self.cache_url,
            ttl_s=self.cache_ttl_s if ttl_s is None else ttl_s,
            degraded_ttl_s=self.cache_degraded_ttl_s if degraded_ttl_s is None else degraded_ttl_s,
            lease_s=self.cache_lease_s,
        )


def _tables(path: Path, env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each table's values (only those that parsed) and each wrong table's message."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def parse(name: str, read: Callable[[], dict[str, Any]]) -> None:
        try:
            values.update(read())
        except (ValueError, RosterError) as exc:  # ConfigError and SnapshotError too
            errors[name] = str(exc)

    parse("server", lambda: {"server_slots": slots_from_config(path)})
    parse("endpoints", lambda: {"endpoints": endpoints_section(path)})
    parse("agents", lambda: {"roster": load_roster(path) if path.is_file() else DEFAULT_ROSTER})
    parse("cache", lambda: _cache_values(path, env))
    parse("prometheus", lambda: {"prometheus": prometheus.load_settings(path)})
    return values, errors


def _cache_values(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    section = cache_section(path)
    return {
        "cache_url": cache_url(section, env),
        "cache_ttl_s": section.get("ttl", DEFAULT_TTL_S),
        "cache_degraded_ttl_s": section.get("degraded_ttl", DEFAULT_DEGRADED_TTL_S),
        "cache_lease_s": section.get("lease", DEFAULT_LEASE_S),
    }
