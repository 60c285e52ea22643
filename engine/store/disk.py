"""The result cache on disk (diskcache), with single-flight across threads and processes.

A cached result is stored with the time it was stored, so a hit can say how old it is.
Single-flight: callers that miss on the same key take a lock (a thread lock, then an
`flock` on a lock file, so separate processes agree too); the first one runs the
analysis, the others find its result when they get the lock.

A cache that cannot be opened, read or written (corrupt, unwritable, disk full) degrades
to "no cache" with one warning; it never fails an analysis. Entries keep the TTL they
were stored with: a degraded result (not every agent answered) gets a short one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache

from engine.store.base import (
    DEFAULT_DEGRADED_TTL_S,
    DEFAULT_TTL_S,
    CacheHit,
    CacheStats,
    check_ttls,
)

log = logging.getLogger(__name__)

DEFAULT_SIZE_LIMIT = 256 * 2**20
_LOCK_STRIPES = 64  # bounded number of lock files; unrelated keys rarely share one


class ResultCache:
    def __init__(
        self,
        directory: str | Path,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S,
        size_limit: int = DEFAULT_SIZE_LIMIT,
    ) -> None:
        check_ttls(ttl_s, degraded_ttl_s)
        self.directory = Path(directory)
        self.ttl_s = ttl_s
        self.degraded_ttl_s = degraded_ttl_s
        self.degraded: str | None = None
        self._hits = self._misses = 0
        self._thread_locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self._store: diskcache.Cache | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "locks").mkdir(exist_ok=True)
            self._store = diskcache.Cache(
                str(self.directory / "results"),
                size_limit=size_limit,
                # size_limit does not count SQLite's write-ahead log; keep it small too.
                sqlite_wal_autocheckpoint=128,
                sqlite_journal_size_limit=2**20,
            )
        except Exception as exc:  # any failure to open means: run without a cache
            self._degrade(f"cannot open cache at {self.directory}: {exc}")

    def _degrade(self, why: str) -> None:
        if self.degraded is None:
            log.warning("result cache disabled: %s", why)
        self.degraded = why
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def get(self, key: str, *, count_miss: bool = True) -> CacheHit | None:
        """The stored result and its age. `count_miss=False` for a re-check under the
        single-flight lock, so one fresh run counts as one miss in the stats."""
        if self._store is None:
            return None
        try:
            entry = self._store.get(key)
        except Exception as exc:
            self._degrade(f"cannot read cache: {exc}")
            return None
        if not isinstance(entry, dict) or "result" not in entry or "stored_at" not in entry:
            self._misses += count_miss
            return None
        self._hits += 1
        ttl = entry.get("ttl_s")
        age = max(0.0, time.time() - float(entry["stored_at"]))
        return CacheHit(entry["result"], age, float(ttl) if ttl is not None else None)

    def set(
        self,
        key: str,
        result: dict[str, Any],
        *,
        ttl_s: float | None = None,
        fence: int | None = None,
    ) -> bool:
        """Store `result` for `ttl_s` (default: the cache's TTL). `fence` is unused: the
        `flock` has no expiry, so no other leader can have taken over."""
        if self._store is None:
            return False
        ttl = self.ttl_s if ttl_s is None else ttl_s
        try:
            entry = {"stored_at": time.time(), "ttl_s": ttl, "result": result}
            self._store.set(key, entry, expire=ttl)
        except Exception as exc:
            self._degrade(f"cannot write cache: {exc}")
            return False
        return True

    @contextlib.contextmanager
    def single_flight(self, key: str) -> Iterator[int | None]:
        """Hold the lock for `key`: one caller at a time, across threads and processes.
        Yields None: an `flock` dies with its holder, so no fencing token is needed."""
        stripe = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % _LOCK_STRIPES
        with self._guard:
            thread_lock = self._thread_locks.setdefault(stripe, threading.Lock())
        with thread_lock:
            fd = self._open_lock_file(stripe)
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the other process is done
                yield None
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    def _open_lock_file(self, stripe: int) -> int | None:
        if self._store is None:
            return None
        try:
            return os.open(self.directory / "locks" / f"{stripe:02d}.lock", os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            log.warning("cross-process single-flight unavailable: %s", exc)
            return None

    def stats(self) -> CacheStats:
        entries = size = 0
        if self._store is not None:
            try:
                self._store.expire()
                entries, size = len(self._store), int(self._store.volume())
            except Exception as exc:
                self._degrade(f"cannot read cache: {exc}")
        return CacheStats(
            str(self.directory),
            entries,
            size,
            self._hits,
            self._misses,
            self.ttl_s,
            self.degraded,
            self.degraded_ttl_s,
        )

    def clear(self) -> int:
        if self._store is None:
            return 0
        try:
            return int(self._store.clear())
        except Exception as exc:
            self._degrade(f"cannot clear cache: {exc}")
            return 0

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class DiskSlotMemory:
    """`SlotMemory` in a diskcache directory (beside the result cache): shared by every
    process on this machine. A storage failure logs once and forgets."""

    def __init__(self, directory: str | Path) -> None:
        self._store: diskcache.Cache | None = None
        try:
            self._store = diskcache.Cache(str(directory), size_limit=2**20)
        except Exception as exc:
            log.warning("learned server slots kept in memory only: %s", exc)

    def recall(self, key: str) -> dict[str, Any] | None:
        if self._store is None:
            return None
        try:
            record = self._store.get(key)
        except Exception as exc:
            log.warning("cannot read learned server slots: %s", exc)
            return None
        return dict(record) if isinstance(record, dict) else None

    def remember(self, key: str, record: dict[str, Any], ttl_s: float) -> None:
        if self._store is None:
            return
        try:
            self._store.set(key, dict(record), expire=ttl_s)
        except Exception as exc:
            log.warning("cannot store learned server slots: %s", exc)
