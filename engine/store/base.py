"""What every store shares: the protocols, the defaults, and the one check of their settings.

The stores (`disk.py`, `redis_store.py`, `history.py`) import this module and nothing
else of engine/store; `state.py` picks one of them from the settings. So the imports
inside engine/store run one way: state → the stores → base.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from engine.records import AnalysisResult

DEFAULT_TTL_S = 300.0
DEFAULT_DEGRADED_TTL_S = 60.0
DEFAULT_LEASE_S = 10.0


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


class SlotMemory(Protocol):
    """What was learned about servers' slots (engine/backends/slot_probe.py), per endpoint and
    model: a small record with its own expiry. Never raises: a failing store forgets."""

    def recall(self, key: str) -> dict[str, Any] | None: ...

    def remember(self, key: str, record: dict[str, Any], ttl_s: float) -> None: ...


def check_ttls(ttl_s: float, degraded_ttl_s: float, lease_s: float | None = None) -> None:
    """Field-level errors for the TTLs every result store takes, and the Redis lease
    (None: the store has no lease)."""
    if ttl_s <= 0:
        raise ValueError(f"ttl: must be > 0 seconds, got {ttl_s:g}")
    if degraded_ttl_s <= 0:
        raise ValueError(f"degraded-ttl: must be > 0 seconds, got {degraded_ttl_s:g}")
    if lease_s is not None and lease_s <= 0:
        raise ValueError(f"lease: must be > 0 seconds, got {lease_s:g}")


def ttl_for(result: AnalysisResult, ttl_s: float, degraded_ttl_s: float) -> float:
    """A result some agents did not answer is kept only briefly: the next refresh tries
    again instead of serving the degraded answer for the full TTL."""
    if result.agents_participated < result.agents_total:
        return min(ttl_s, degraded_ttl_s)
    return ttl_s
