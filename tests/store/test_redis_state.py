"""Redis state against a real redis-server: cache, lease + fencing, history, outages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from bench.plumbing import free_port
from bench.redis_server import PASSWORD, RedisServer
from engine.records import AnalysisResult
from engine.run.runner import RunSettings
from engine.service import Engine
from engine.sources.snapshot import scenario
from engine.store import history as exports
from engine.store.redis_store import RedisHistory, RedisLink, RedisResultCache
from tests.support.results import a_result
from tests.support.simulated import simulated


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def fresh_link(url: str, *, retry_s: float = 0.0) -> RedisLink:
    """A link of the test's own (the process-wide one would carry state between tests)."""
    return RedisLink(url, retry_s=retry_s)


def test_miss_then_hit_with_age_and_the_stored_ttl(redis_url: str, client: redis.Redis) -> None:
    cache = RedisResultCache(fresh_link(redis_url), ttl_s=120)
    assert cache.get("k") is None
    assert cache.set("k", {"answer": 42})
    hit = cache.get("k")
    assert hit is not None and hit.result == {"answer": 42} and hit.ttl_s == 120
    assert 0 <= hit.age_s < 5
    assert 115_000 < client.pttl("quorum:result:k") <= 120_000
    assert cache.set("short", {"a": 1}, ttl_s=7.5)
    assert 0 < client.pttl("quorum:result:short") <= 7_500
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses, stats.kind) == (2, 1, 1, "redis")
    assert PASSWORD not in stats.directory and "***@127.0.0.1" in stats.directory
    assert cache.clear() == 2 and cache.get("k") is None


def test_a_dead_leader_blocks_followers_no_longer_than_its_lease_and_is_fenced_out(
    redis_url: str,
) -> None:
    lease = 0.5
    cache = RedisResultCache(fresh_link(redis_url), lease_s=lease)
    # A leader that took the lease and then died: no heartbeat, no release.
    stale = cache._take("k")
    assert stale is not None and stale > 0
    taken = time.monotonic()
    with cache.single_flight("k") as token:  # a follower: waits for the lease to run out
        waited = time.monotonic() - taken
        assert token is not None and token > stale
        assert not cache.set("k", {"from": "stale"}, fence=stale)  # refused: fenced out
        assert cache.set("k", {"from": "new"}, fence=token)
    assert waited <= lease + 0.5
    hit = cache.get("k")
    assert hit is not None and hit.result == {"from": "new"}


def test_the_lease_is_renewed_while_the_leader_runs(redis_url: str) -> None:
    lease = 0.6  # renewed every 0.2 s: a busy machine may delay a renewal, not by 0.4 s
    # A read timeout shorter than a follower's wait: waiting is not reading a reply.
    cache = RedisResultCache(RedisLink(redis_url, read_timeout_s=0.3), lease_s=lease)
    other = RedisResultCache(RedisLink(redis_url, read_timeout_s=0.3), lease_s=lease)
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def leader() -> None:
        with cache.single_flight("k"):
            holding.set()
            release.wait(10)  # held for several leases
            order.append("leader done")

    thread = threading.Thread(target=leader)
    thread.start()
    assert holding.wait(10)
    # A follower waits on the leader's release, not on the (renewed) lease running out.
    follower_started = time.monotonic()
    threading.Timer(3 * lease, release.set).start()
    with other.single_flight("k"):
        order.append("follower")
    thread.join(10)
    assert order == ["leader done", "follower"] and other.degraded is None
    assert time.monotonic() - follower_started >= 3 * lease


def test_history_is_a_capped_list_newest_first_with_unchanged_exports(redis_url: str) -> None:
    h = RedisHistory(fresh_link(redis_url), max_entries=3)
    results = [a_result(name) for name in ("healthy", "cpu-saturation", "memory-leak")]
    for i in range(5):
        r = AnalysisResult.from_dict(results[i % 3].to_dict())
        r.execution_time_s = float(i)
        h.append(r)
    loaded = h.load()
    assert [r.execution_time_s for r in loaded] == [4.0, 3.0, 2.0]
    assert len(h.load(limit=2)) == 2 and h.load(limit=0) == []
    assert exports.to_csv(loaded).splitlines()[0] == ",".join(exports.CSV_COLUMNS)
    h.clear()
    assert h.load() == []


def test_redis_down_at_start_runs_uncached_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"  # nothing listens there
    link = fresh_link(url, retry_s=60)
    with simulated() as (server, backend):
        engine = Engine(backend, cache=RedisResultCache(link), history=RedisHistory(link))
        first = engine.analyze(scenario("healthy"), RunSettings())
        second = engine.analyze(scenario("healthy"), RunSettings())
        chats = sum(server.stats.snapshot().answers_by_agent().values())
    assert first.status == second.status == "success"
    assert not first.cache.hit and not second.cache.hit and first.cache.ttl_s is None
    assert chats == 12  # two fresh fan-outs: nothing was cached
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    assert PASSWORD not in caplog.text and link.degraded is not None


def test_redis_stopped_mid_run_then_back(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    link = fresh_link(own_redis.url, retry_s=0.0)  # retry at once: the test controls time
    running = threading.Event()
    with simulated(scale=0.05) as (_, backend):
        engine = Engine(backend, cache=RedisResultCache(link), history=RedisHistory(link))
        snap = scenario("memory-leak")
        out: list[AnalysisResult] = []
        worker = threading.Thread(
            target=lambda: out.append(
                engine.analyze(snap, RunSettings(), progress=lambda _: running.set())
            )
        )
        worker.start()
        assert running.wait(10)  # the leader holds the lease and is running
        own_redis.stop()
        worker.join(30)
        assert not worker.is_alive() and out[0].status == "success"
        assert out[0].cache.ttl_s is None  # could not be stored
        assert link.degraded is not None
        uncached = engine.analyze(snap, RunSettings())
        assert not uncached.cache.hit and uncached.status == "success"
        own_redis.start()  # same port
        stored = engine.analyze(snap, RunSettings())
        hit = engine.analyze(snap, RunSettings())
    assert stored.cache.ttl_s == 300 and not stored.cache.hit
    assert hit.cache.hit and link.degraded is None
    assert "unavailable" in caplog.text and "reachable again" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_degraded_result_is_cached_briefly_in_redis(redis_url: str, client: redis.Redis) -> None:
    cache = RedisResultCache(fresh_link(redis_url), ttl_s=300, degraded_ttl_s=20)
    with simulated(faults={"CostOptimizer": "hang"}) as (_, backend):
        engine = Engine(backend, cache=cache)
        result = engine.analyze(scenario("healthy"), RunSettings(agent_timeout_s=1.0))
        again = engine.analyze(scenario("healthy"), RunSettings(agent_timeout_s=1.0))
    assert result.agents_participated == 4 and result.cache.ttl_s == 20
    assert again.cache.hit and again.cache.ttl_s == 20
    (key,) = client.keys("quorum:result:*")
    assert 0 < client.pttl(key) <= 20_000


def test_a_redis_that_accepts_but_never_answers_costs_one_read_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hung Redis (the port accepts, nothing answers): bounded by the read timeout,
    then uncached; the run is not held up for longer than that."""
    import socket

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # the kernel completes the handshakes; no one ever reads
        port = hung.getsockname()[1]
        link = RedisLink(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", read_timeout_s=0.5, retry_s=60)
        with simulated() as (_, backend):
            engine = Engine(backend, cache=RedisResultCache(link), history=RedisHistory(link))
            started = time.monotonic()
            result = engine.analyze(scenario("healthy"), RunSettings())
            took = time.monotonic() - started
    assert result.status == "success" and not result.cache.hit
    assert link.degraded is not None and "Timeout" in link.degraded
    # One read timeout (then Redis is skipped for retry_s), plus the run itself: a hang
    # guard with room for a slow machine, not a performance figure.
    assert took < 10
    assert PASSWORD not in caplog.text
