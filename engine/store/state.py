"""Which store the settings pick: the result cache, its single-flight lock, the history.

Two implementations behind the protocols of `engine.store.base`, so `Engine` does not
care which:
- files on this machine (the default; `make run` needs nothing else): `ResultCache`
  (diskcache + `flock`, `engine.store.disk`) and `History` (a JSON-lines file,
  `engine.store.history`);
- Redis, shared by every replica on every machine, when a URL is configured
  (`QUORUM_CACHE_URL=redis://…` / `rediss://…`, or `[cache] url` in quorum.toml):
  `engine.store.redis_store`.

This module reads the `[cache]` settings and opens the stores; no store imports it.
Either store degrades to "no cache" with one warning when its storage fails; an analysis
never fails because of it. Redis URLs may carry a password: only their
`engine.redact.redact_url` forms are ever logged, shown or stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine import config
from engine.redact import redact_url
from engine.store.base import (
    DEFAULT_DEGRADED_TTL_S,
    DEFAULT_LEASE_S,
    DEFAULT_TTL_S,
    HistoryStore,
    ResultStore,
    SlotMemory,
    check_ttls,
)
from engine.store.disk import DiskSlotMemory, ResultCache
from engine.store.history import History
from engine.store.redis_store import RedisHistory, RedisResultCache, RedisSlotMemory

CACHE_URL_ENV = "QUORUM_CACHE_URL"
REDIS_SCHEMES = ("redis", "rediss", "unix")
REPO_ROOT = Path(__file__).resolve().parents[2]  # engine/store/state.py → the repository


@dataclass(frozen=True)
class StateConfig:
    """What the cache settings (CLI, quorum.toml, dashboard) decided."""

    url: str | None = field(default=None, repr=False)  # may hold a password: never print it
    ttl_s: float = DEFAULT_TTL_S
    degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S
    lease_s: float = DEFAULT_LEASE_S

    def __post_init__(self) -> None:
        check_ttls(self.ttl_s, self.degraded_ttl_s, self.lease_s)
        if self.url is not None:
            scheme = urlsplit(self.url).scheme
            if scheme not in REDIS_SCHEMES:
                raise ValueError(
                    f"cache url: must start with redis://, rediss:// or unix://, "
                    f"got {redact_url(self.url)!r}"
                )

    @property
    def shared(self) -> bool:
        return self.url is not None

    @property
    def where(self) -> str:
        return redact_url(self.url) if self.url else "disk"


def cache_section(path: str | Path | None) -> dict[str, Any]:
    """The `[cache]` table of quorum.toml (url, ttl, degraded_ttl, lease); {} if absent.

    Raises ValueError naming the field for a wrong type."""
    table = config.table(path, "cache")
    out: dict[str, Any] = {}
    for name, kind in (("url", str), ("ttl", float), ("degraded_ttl", float), ("lease", float)):
        if name not in table:
            continue
        value = table[name]
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
        elif kind is str and isinstance(value, str):
            out[name] = value
        else:
            raise ValueError(f"{path}: cache.{name}: must be a {kind.__name__}")
    unknown = sorted(set(table) - {"url", "ttl", "degraded_ttl", "lease"})
    if unknown:
        raise ValueError(f"{path}: cache.{unknown[0]}: unknown setting")
    return out


def cache_url(section: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> str | None:
    """$QUORUM_CACHE_URL, else quorum.toml's `[cache] url`; None: keep state on disk."""
    from_env = env.get(CACHE_URL_ENV, "").strip()
    if from_env:
        return from_env
    url = section.get("url")
    return url.strip() or None if isinstance(url, str) else None


def open_cache(config: StateConfig, directory: str | Path) -> ResultStore:
    """The result cache `config` asks for (Redis when a URL is set, else `directory`)."""
    if config.url is not None:
        return RedisResultCache(
            config.url,
            ttl_s=config.ttl_s,
            degraded_ttl_s=config.degraded_ttl_s,
            lease_s=config.lease_s,
        )
    return ResultCache(directory, ttl_s=config.ttl_s, degraded_ttl_s=config.degraded_ttl_s)


class ProcessSlotMemory:
    """In this process only: where the engine runs without a cache."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def recall(self, key: str) -> dict[str, Any] | None:
        expires, record = self._entries.get(key, (0.0, {}))
        return dict(record) if expires > time.time() else None

    def remember(self, key: str, record: dict[str, Any], ttl_s: float) -> None:
        self._entries[key] = (time.time() + ttl_s, dict(record))


def slot_memory_for(cache: ResultStore | None) -> SlotMemory:
    """Learned slots live beside the result cache: the same Redis when it is Redis (every
    replica learns once), a diskcache next to it on disk, else this process's memory."""
    if isinstance(cache, ResultCache) and cache.degraded is None:
        return DiskSlotMemory(cache.directory / "slots")
    if isinstance(cache, RedisResultCache):
        return RedisSlotMemory(cache.link, cache.prefix)
    return ProcessSlotMemory()


def open_history(config: StateConfig, path: str | Path) -> HistoryStore:
    """The run history: a capped Redis list when a URL is set, else the JSON-lines file."""
    if config.url is not None:
        return RedisHistory(config.url)
    return History(path)
