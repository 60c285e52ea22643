"""Where Prometheus is and how to ask it: the `[prometheus]` table of quorum.toml, the
endpoint with its credentials kept apart from the URL that is shown, the bearer token."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from engine import config
from engine.sources.prometheus.queries import (
    DEFAULT_MOUNTPOINT,
    DEFAULT_SERVICE_QUERIES,
    SERVICE_FIELDS,
)
from engine.sources.snapshot import SnapshotError

TOKEN_ENV = "QUORUM_PROMETHEUS_TOKEN"
SECRETS_KEY = "prometheus_token"  # in .streamlit/secrets.toml
DEFAULT_TIMEOUT_S = 5.0  # one HTTP request
DEFAULT_BUDGET_S = 20.0  # the whole reading (targets and every query)
DEFAULT_RATE_WINDOW = "1m"  # at least 4 scrape intervals at the common 15 s
DEFAULT_STALE_AFTER_S = 60.0  # node samples older than this are stale, not "now"
_MAX_TEXT = 300  # any text from the server, in a message


@dataclass(frozen=True)
class PromSettings:
    """The `[prometheus]` table of quorum.toml (every key optional)."""

    url: str = ""
    instance: str = ""
    job: str = ""
    rate_window: str = DEFAULT_RATE_WINDOW
    mountpoint: str = DEFAULT_MOUNTPOINT
    timeout_s: float = DEFAULT_TIMEOUT_S
    budget_s: float = DEFAULT_BUDGET_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    queries: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SERVICE_QUERIES))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "quorum.toml") -> PromSettings:
        """Validate the table; SnapshotError names `prometheus.<key>`."""
        if not isinstance(data, Mapping):
            raise SnapshotError("prometheus", f"{source}: [prometheus] must be a table")
        known = {"url", "instance", "job", "rate_window", "mountpoint", "timeout_s", "budget_s",
                 "stale_after_s", "queries"}  # fmt: skip
        for key in data:
            if key not in known:
                raise SnapshotError(
                    f"prometheus.{key}",
                    f"unknown key in {source} (known: {', '.join(sorted(known))})",
                )
        values: dict[str, Any] = {}
        for key in ("url", "instance", "job", "rate_window", "mountpoint"):
            if key in data:
                if not isinstance(data[key], str):
                    raise SnapshotError(f"prometheus.{key}", "must be a string")
                values[key] = data[key].strip()
        if "rate_window" in values and not _is_duration(values["rate_window"]):
            raise SnapshotError("prometheus.rate_window", "must be a PromQL duration such as 1m")
        for key in ("timeout_s", "budget_s", "stale_after_s"):
            if key in data:
                raw = data[key]
                if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
                    raise SnapshotError(f"prometheus.{key}", "must be a number of seconds > 0")
                values[key] = float(raw)
        queries = dict(DEFAULT_SERVICE_QUERIES)
        raw_queries = data.get("queries", {})
        if not isinstance(raw_queries, Mapping):
            raise SnapshotError("prometheus.queries", "must be a table of field = PromQL")
        for name, query in raw_queries.items():
            if name not in SERVICE_FIELDS:
                raise SnapshotError(
                    f"prometheus.queries.{name}",
                    f"not a service field ({', '.join(SERVICE_FIELDS)})",
                )
            if not isinstance(query, str):
                raise SnapshotError(f"prometheus.queries.{name}", "must be a PromQL string")
            queries[name] = query.strip()  # "" turns the field off: always unknown
        return cls(**values, queries=queries)


def load_settings(path: str | Path | None) -> PromSettings:
    """The `[prometheus]` table of a quorum.toml; the defaults when there is no file."""
    if path is None or not Path(path).is_file():
        return PromSettings()
    try:
        data = config.read(path)
    except config.ConfigError as exc:
        raise SnapshotError("prometheus", str(exc)) from None
    return PromSettings.from_dict(data.get("prometheus", {}), source=str(path))


def _is_duration(text: str) -> bool:
    units = ("ms", "s", "m", "h", "d", "w", "y")
    rest = text
    if not rest:
        return False
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits == 0:
            return False
        rest = rest[digits:]
        unit = next((u for u in units if rest.startswith(u)), None)
        if unit is None:
            return False
        rest = rest[len(unit) :]
    return True


@dataclass(frozen=True)
class Endpoint:
    """Where Prometheus is, with its credentials kept apart from the URL that is shown."""

    url: str  # no userinfo
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, raw: str, token: str | None = None) -> Endpoint:
        """`http(s)://[user:pass@]host[:port][/prefix]`; SnapshotError never repeats the URL."""
        text = raw.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, ValueError):
            raise SnapshotError("prometheus", "not a valid URL (http(s)://host:port)") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise SnapshotError("prometheus", "URL must be http(s)://host[:port][/path]")
        bare = url.copy_with(username=None, password=None, query=None, fragment=None)
        return cls(
            url=str(bare).rstrip("/"),
            username=url.username or None,
            password=url.password or None,
            token=token or None,
        )

    @property
    def display(self) -> str:
        return self.url

    @property
    def secrets(self) -> tuple[str, ...]:
        # The user name is not secret (and a short one would mangle every message); it only
        # ever appears inside a URL, and messages use `display`, which has no userinfo.
        return tuple(s for s in (self.password, self.token) if s)

    def scrub(self, text: str) -> str:
        """`text` with every credential replaced: for anything that came off the network."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
            text = text.replace(quote(secret, safe=""), "***")  # as written in a URL
        return " ".join(text.split())[:_MAX_TEXT]


def bearer_token(secrets_file: Path | None = None) -> tuple[str | None, str | None]:
    """(token, where it came from): $QUORUM_PROMETHEUS_TOKEN, else `prometheus_token` in a
    secrets.toml. The token is passed to httpx and nowhere else."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip(), TOKEN_ENV
    if secrets_file is not None and secrets_file.is_file():
        try:
            value = tomllib.loads(secrets_file.read_text(encoding="utf-8")).get(SECRETS_KEY)
        except (OSError, tomllib.TOMLDecodeError):
            return None, None  # an unreadable secrets file means "no token", not a crash
        if isinstance(value, str) and value.strip():
            return value.strip(), "secrets.toml"
    return None, None
