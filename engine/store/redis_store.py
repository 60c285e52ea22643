"""Shared state in Redis: the result cache, a single-flight lease, and the run history.

Selected by `QUORUM_CACHE_URL=redis://…` (or `rediss://`, or `[cache] url` in
quorum.toml), so every replica on every machine shares one cache, one lock per
analysis and one history. The `redis` client does the protocol.

Single-flight: the leader takes a lock with an expiry (a lease) and a fencing token (a
per-key counter incremented on every take-over). While it runs, a heartbeat renews the
lease; if the leader dies, renewal stops and the lease runs out, so followers wait at
most one lease. Followers wait on a pub/sub message the leader sends when it releases,
bounded by the lease's remaining time, then try again. The leader's cache write carries
its token and is refused if a newer leader has taken over in the meantime.

Faults: connect and read timeouts are short and there is no retry loop; the first
failure logs one warning, and for `retry_s` after it every call skips Redis (analyses
run uncached, the lock is in-process only). The next call after that tries again, so
the engine recovers by itself when Redis returns. Messages never carry the password.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.records import AnalysisResult
from engine.redact import redact_url
from engine.store.base import (
    DEFAULT_DEGRADED_TTL_S,
    DEFAULT_LEASE_S,
    DEFAULT_TTL_S,
    CacheHit,
    CacheStats,
    check_ttls,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
PREFIX = "quorum:"
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
RETRY_S = 2.0  # after a failure, how long calls skip Redis before trying again
FENCE_TTL_MS = 24 * 3600 * 1000  # a key's token counter outlives any lease by far
STATS_SCAN_LIMIT = 10_000
HISTORY_MAX_ENTRIES = 2000
_FAILURES = (redis.RedisError, OSError)

# KEYS: lock, fence counter. ARGV: lease ms, fence ttl ms. → new token, or 0 if held.
_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local token = redis.call('incr', KEYS[2])
redis.call('pexpire', KEYS[2], ARGV[2])
redis.call('set', KEYS[1], token, 'PX', ARGV[1])
return token
"""
# KEYS: lock. ARGV: token, lease ms. → 1 renewed, 0 the lease is no longer ours.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lock, channel. ARGV: token. Deletes the lock only if it is still ours; wakes followers.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
redis.call('publish', KEYS[2], ARGV[1])
return 1
"""
# KEYS: result, fence counter. ARGV: value, ttl ms, token. → 1 stored, 0 fenced out.
_FENCED_SET = """
if tonumber(redis.call('get', KEYS[2]) or '0') > tonumber(ARGV[3]) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def url_password(url: str) -> str | None:
    """The password a Redis URL carries, in its user part or as `?password=`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    query = parse_qs(parts.query).get("password")
    return parts.password or (query[0] if query else None)


class RedisLink:
    """One client for one URL, and whether Redis is currently usable.

    `call` runs a command and turns any Redis or socket failure into None plus one
    warning per outage; while the outage is recent it does not even try."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.where = redact_url(url)
        self._password = url_password(url) or ""
        self.retry_s = retry_s
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=read_timeout_s,
            retry=Retry(NoBackoff(), 0),  # a dead Redis must cost one timeout, not several
        )
        self._lock = threading.Lock()
        self._down_reason: str | None = None
        self._down_until = 0.0

    @property
    def degraded(self) -> str | None:
        return self._down_reason

    def scrub(self, text: str) -> str:
        """`text` without the password (error messages may echo parts of the URL)."""
        return text.replace(self._password, "***") if self._password else text

    def call(self, what: str, command: Callable[[redis.Redis], T]) -> T | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            out = command(self.client)
        except _FAILURES as exc:
            self.failed(what, exc)
            return None
        self._recovered()
        return out

    def failed(self, what: str, exc: BaseException) -> None:
        reason = self.scrub(f"cannot {what}: {type(exc).__name__}: {exc}")
        with self._lock:
            first = self._down_reason is None
            self._down_reason = reason
            self._down_until = time.monotonic() + self.retry_s
        if first:
            log.warning(
                "shared state at %s unavailable (%s); running uncached, retrying every %g s",
                self.where,
                reason,
                self.retry_s,
            )

    def _recovered(self) -> None:
        if self._down_reason is None:
            return
        with self._lock:
            was, self._down_reason = self._down_reason, None
        if was is not None:
            log.warning("shared state at %s is reachable again", self.where)


_links: dict[str, RedisLink] = {}
_links_lock = threading.Lock()


def link_for(url: str) -> RedisLink:
    """The process's link for `url`: the cache and the history share one client and one
    idea of whether Redis is up (so an outage is one warning, not one per user)."""
    with _links_lock:
        link = _links.get(url)
        if link is None:
            link = _links[url] = RedisLink(url)
        return link


class RedisResultCache:
    """The `ResultStore` in Redis: entries expire with their own TTL on the server."""

    def __init__(
        self,
        url: str | RedisLink,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        degraded_ttl_s: float = DEFAULT_DEGRADED_TTL_S,
        lease_s: float = DEFAULT_LEASE_S,
        prefix: str = PREFIX,
    ) -> None:
        check_ttls(ttl_s, degraded_ttl_s, lease_s)
        self.link = url if isinstance(url, RedisLink) else link_for(url)
        self.ttl_s = ttl_s
        self.degraded_ttl_s = degraded_ttl_s
        self.lease_s = lease_s
        self.prefix = prefix
        self._hits = self._misses = 0
        client = self.link.client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._fenced_set = client.register_script(_FENCED_SET)

    @property
    def degraded(self) -> str | None:
        return self.link.degraded

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    def get(self, key: str, *, count_miss: bool = True) -> CacheHit | None:
        def read(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.get(self._key("result", key))
            pipe.pttl(self._key("result", key))
            return list(pipe.execute())

        got = self.link.call("read the cache", read)
        if got is None:
            return None
        raw, pttl = got
        try:
            entry = json.loads(raw) if raw is not None else {}
            result, ttl = entry["result"], float(entry["ttl_s"])
        except (ValueError, TypeError, KeyError):
            self._misses += count_miss
            return None
        # Age from the server's own clock (remaining TTL), so replicas' clocks may differ.
        age = ttl - pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else 0.0
        self._hits += 1
        return CacheHit(result, max(0.0, age), ttl)

    def set(
        self,
        key: str,
        result: dict[str, Any],
        *,
        ttl_s: float | None = None,
        fence: int | None = None,
    ) -> bool:
        """Store `result`; with `fence`, only if no newer leader took the key over."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        value = json.dumps({"stored_at": time.time(), "ttl_s": ttl, "result": result})
        ttl_ms = max(1, round(ttl * 1000))
        keys = [self._key("result", key), self._key("fence", key)]

        def write(r: redis.Redis) -> bool:
            if fence is None:
                return bool(r.set(keys[0], value, px=ttl_ms))
            return bool(self._fenced_set(keys=keys, args=[value, ttl_ms, fence], client=r))

        stored = self.link.call("write the cache", write)
        if stored is False:
            log.warning("cache write for %s refused: a newer leader took over", key[:8])
        return bool(stored)

    @contextlib.contextmanager
    def single_flight(self, key: str) -> Iterator[int | None]:
        """Hold the lease for `key` (renewed while the body runs); yields its fencing
        token, or None when Redis is unavailable (then only this process is guarded)."""
        token = self._take(key)
        if token is None:
            yield None
            return
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(key, token, stop), name="quorum-lease", daemon=True
        )
        beat.start()
        try:
            yield token
        finally:
            stop.set()
            beat.join()
            keys = [self._key("lock", key), self._key("done", key)]
            self.link.call(
                "release the lock", lambda r: self._release(keys=keys, args=[token], client=r)
            )

    def _take(self, key: str) -> int | None:
        """Wait until the lease is ours (its token) or Redis fails (None)."""
        lock = self._key("lock", key)
        keys, args = [lock, self._key("fence", key)], [round(self.lease_s * 1000), FENCE_TTL_MS]
        pubsub = None
        try:
            while True:
                token = self.link.call(
                    "take the lock", lambda r: int(self._acquire(keys=keys, args=args, client=r))
                )
                if token is None or token > 0:
                    return token
                if pubsub is None:
                    log.info("waiting for another replica's run of %s", key[:8])
                    # Subscribe, then try again at once: a release between our attempt and
                    # the subscription would otherwise go unnoticed until the lease ends.
                    # redis-py types pubsub() from 8.2 on; before, it is untyped.
                    pubsub = self.link.client.pubsub(  # type: ignore[no-untyped-call,unused-ignore]
                        ignore_subscribe_messages=True
                    )
                    pubsub.subscribe(self._key("done", key))
                    continue
                left_ms = self.link.call("read the lock", lambda r: int(r.pttl(lock)))
                if left_ms is None:
                    return None
                if left_ms == -1:  # a lock without expiry (set by hand): wait a lease
                    left_ms = args[0]
                if left_ms > 0:
                    # Woken by the leader's release, or when its lease would run out.
                    pubsub.get_message(timeout=left_ms / 1000 + 0.01)
        except _FAILURES as exc:
            self.link.failed("wait for the lock", exc)
            return None
        finally:
            if pubsub is not None:
                with contextlib.suppress(*_FAILURES):
                    pubsub.close()

    def _heartbeat(self, key: str, token: int, stop: threading.Event) -> None:
        keys, args = [self._key("lock", key)], [token, round(self.lease_s * 1000)]
        while not stop.wait(self.lease_s / 3):
            renewed = self.link.call(
                "renew the lease", lambda r: int(self._renew(keys=keys, args=args, client=r))
            )
            if renewed == 0:
                log.warning("single-flight lease for %s lost: another replica may run it", key[:8])
                return

    def _result_keys(self, r: redis.Redis) -> list[bytes]:
        keys: list[bytes] = []
        for name in r.scan_iter(match=f"{self.prefix}result:*", count=500):
            keys.append(name)
            if len(keys) >= STATS_SCAN_LIMIT:
                break
        return keys

    def stats(self) -> CacheStats:
        def measure(r: redis.Redis) -> tuple[int, int]:
            keys = self._result_keys(r)
            pipe = r.pipeline(transaction=False)
            for name in keys:
                pipe.strlen(name)
            return len(keys), sum(int(n) for n in pipe.execute())

        entries, size = self.link.call("read cache statistics", measure) or (0, 0)
        return CacheStats(
            self.link.where,
            entries,
            size,
            self._hits,
            self._misses,
            self.ttl_s,
            self.degraded,
            self.degraded_ttl_s,
            kind="redis",
        )

    def clear(self) -> int:
        def drop(r: redis.Redis) -> int:
            keys = self._result_keys(r)
            return int(r.delete(*keys)) if keys else 0

        return self.link.call("clear the cache", drop) or 0

    def close(self) -> None:
        """Nothing to do: the link is shared by the process's stores."""


class RedisSlotMemory:
    """`SlotMemory` in Redis: every replica learns a server's slots once."""

    def __init__(self, link: RedisLink, prefix: str = PREFIX) -> None:
        self.link = link
        self.prefix = prefix

    def recall(self, key: str) -> dict[str, Any] | None:
        raw = self.link.call("read learned slots", lambda r: r.get(f"{self.prefix}slots:{key}"))
        try:
            record = json.loads(raw) if raw is not None else None
        except (ValueError, TypeError):
            return None
        return record if isinstance(record, dict) else None

    def remember(self, key: str, record: dict[str, Any], ttl_s: float) -> None:
        value = json.dumps(record)
        ttl_ms = max(1, round(ttl_s * 1000))
        self.link.call(
            "store learned slots", lambda r: r.set(f"{self.prefix}slots:{key}", value, px=ttl_ms)
        )


class RedisHistory:
    """The `HistoryStore` in Redis: a list capped at `max_entries`, newest first."""

    def __init__(
        self,
        url: str | RedisLink,
        *,
        max_entries: int = HISTORY_MAX_ENTRIES,
        key: str = f"{PREFIX}history",
    ) -> None:
        self.link = url if isinstance(url, RedisLink) else link_for(url)
        self.max_entries = max_entries
        self.key = key

    @property
    def where(self) -> str:
        return f"{self.link.where} (list {self.key})"

    @property
    def degraded(self) -> str | None:
        return self.link.degraded

    def append(self, result: AnalysisResult) -> None:
        line = json.dumps(result.to_dict(), separators=(",", ":"))

        def push(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=True)  # push and trim as one step
            pipe.lpush(self.key, line)
            pipe.ltrim(self.key, 0, self.max_entries - 1)
            pipe.execute()

        self.link.call("append to the history", push)

    def load(self, limit: int | None = None) -> list[AnalysisResult]:
        end = -1 if limit is None else max(0, limit) - 1
        if end == -1 and limit == 0:
            return []
        raw: list[bytes | str] = (
            self.link.call("read the history", lambda r: r.lrange(self.key, 0, end)) or []
        )
        out: list[AnalysisResult] = []
        for number, item in enumerate(raw, 1):
            try:
                out.append(AnalysisResult.from_dict(json.loads(item)))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("history entry %d skipped: %s", number, exc)
        return out

    def clear(self) -> None:
        self.link.call("clear the history", lambda r: r.delete(self.key))
