"""Where the engine keeps shared state: the result cache, its single-flight lock, the history.

Two implementations behind one small interface, so `Engine` does not care which:
- files on this machine (the default; `make run` needs nothing else): `ResultCache`
  (diskcache + `flock`) and `History` (a JSON-lines file);
- Redis, shared by every replica on every machine, when a URL is configured
  (`QUORUM_CACHE_URL=redis://…` / `rediss://…`, or `[cache] url` in quorum.toml):
  `engine.store.redis_store`.

Either degrades to "no cache" with one warning when its storage fails; an analysis never
fails because of it. Redis URLs may carry a password: only `redact()`ed forms are ever
logged, shown or stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

from engine import config
from engine.records import AnalysisResult

DEFAULT_TTL_S = 300.0
DEFAULT_DEGRADED_TTL_S = 60.0
DEFAULT_LEASE_S = 10.0
CACHE_URL_ENV = "QUORUM_CACHE_URL"
REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class CacheHit:
    result: dict[str, Any]
    age_s: float
    ttl_s: float | None = None  # the TTL the entry was stored with (None: older entry)


@dataclass(frozen=True)
class CacheStats:
    directory: str  # where the cache lives: a directory, or a Redis URL without password
    entries: int
    size_bytes: int
    hits: int
    misses: int
    ttl_s: float
    degraded: str | None
    degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S
    kind: str = "disk"  # "disk" or "redis"


class ResultStore(Protocol):
    """A result cache with single-flight. `set` may refuse a write (fenced out, or the
    storage failed): it says whether the entry was stored."""

    ttl_s: float
    degraded_ttl_s: float

    @property
    def degraded(self) -> str | None: ...

    def get(self, key: str, *, count_miss: bool = True) -> CacheHit | None: ...

    def set(
        self,
        key: str,
        result: dict[str, Any],
        *,
        ttl_s: float | None = None,
        fence: int | None = None,
    ) -> bool: ...

    def single_flight(self, key: str) -> AbstractContextManager[int | None]:
        """Hold the lock for `key` while the body runs; yields the fencing token to pass
        to `set` (None where the lock needs none, or could not be taken)."""
        ...

    def stats(self) -> CacheStats: ...

    def clear(self) -> int: ...

    def close(self) -> None: ...


class HistoryStore(Protocol):
    """Every run, newest first on `load`. Appends never raise."""

    @property
    def where(self) -> str: ...

    @property
    def degraded(self) -> str | None: ...

    def append(self, result: AnalysisResult) -> None: ...

    def load(self, limit: int | None = None) -> list[AnalysisResult]: ...

    def clear(self) -> None: ...


def ttl_for(result: AnalysisResult, ttl_s: float, degraded_ttl_s: float) -> float:
    """A result some agents did not answer is kept only briefly: the next refresh tries
    again instead of serving the degraded answer for the full TTL."""
    if result.agents_participated < result.agents_total:
        return min(ttl_s, degraded_ttl_s)
    return ttl_s


def url_password(url: str) -> str | None:
    """The password a Redis URL carries, in its user part or as `?password=`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    query = parse_qs(parts.query).get("password")
    return parts.password or (query[0] if query else None)


def redact(url: str) -> str:
    """The URL without its password (and user name): safe to log, show and store."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable cache URL>"
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
    )
    netloc = parts.netloc
    if parts.password is not None or parts.username is not None:
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        if parts.password is not None:
            netloc = "***@" + netloc
    # Built by hand: urlunsplit drops the "//" of unix:///path (an empty host).
    rest = (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return f"{parts.scheme}://{netloc}{parts.path}{rest}"


@dataclass(frozen=True)
class StateConfig:
    """What the cache settings (CLI, quorum.toml, dashboard) decided."""

    url: str | None = field(default=None, repr=False)  # may hold a password: never print it
    ttl_s: float = DEFAULT_TTL_S
    degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S
    lease_s: float = DEFAULT_LEASE_S

    def __post_init__(self) -> None:
        if self.ttl_s <= 0:
            raise ValueError(f"ttl: must be > 0 seconds, got {self.ttl_s:g}")
        if self.degraded_ttl_s <= 0:
            raise ValueError(f"degraded-ttl: must be > 0 seconds, got {self.degraded_ttl_s:g}")
        if self.lease_s <= 0:
            raise ValueError(f"lease: must be > 0 seconds, got {self.lease_s:g}")
        if self.url is not None:
            scheme = urlsplit(self.url).scheme
            if scheme not in REDIS_SCHEMES:
                raise ValueError(
                    f"cache url: must start with redis://, rediss:// or unix://, "
                    f"got {redact(self.url)!r}"
                )

    @property
    def shared(self) -> bool:
        return self.url is not None

    @property
    def where(self) -> str:
        return redact(self.url) if self.url else "disk"


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
        from engine.store.redis_store import RedisResultCache

        return RedisResultCache(
            config.url,
            ttl_s=config.ttl_s,
            degraded_ttl_s=config.degraded_ttl_s,
            lease_s=config.lease_s,
        )
    from engine.store.disk import ResultCache

    return ResultCache(directory, ttl_s=config.ttl_s, degraded_ttl_s=config.degraded_ttl_s)


class SlotMemory(Protocol):
    """What was learned about servers' slots (engine/backends/slot_probe.py), per endpoint and
    model: a small record with its own expiry. Never raises: a failing store forgets."""

    def recall(self, key: str) -> dict[str, Any] | None: ...

    def remember(self, key: str, record: dict[str, Any], ttl_s: float) -> None: ...


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
    from engine.store.disk import DiskSlotMemory, ResultCache
    from engine.store.redis_store import RedisResultCache, RedisSlotMemory

    if isinstance(cache, ResultCache) and cache.degraded is None:
        return DiskSlotMemory(cache.directory / "slots")
    if isinstance(cache, RedisResultCache):
        return RedisSlotMemory(cache.link, cache.prefix)
    return ProcessSlotMemory()


def open_history(config: StateConfig, path: str | Path) -> HistoryStore:
    """The run history: a capped Redis list when a URL is set, else the JSON-lines file."""
    if config.url is not None:
        from engine.store.redis_store import RedisHistory

        return RedisHistory(config.url)
    from engine.store.history import History

    return History(path)
