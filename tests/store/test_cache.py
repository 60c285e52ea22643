"""The disk cache on real files: hits, ages, TTL, single-flight, and degrading safely."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.store.disk import ResultCache


def test_miss_then_hit_with_age(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    assert cache.get("k") is None
    cache.set("k", {"answer": 42})
    hit = cache.get("k")
    assert hit is not None and hit.result == {"answer": 42}
    assert 0 <= hit.age_s < 5
    stats = cache.stats()
    assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)
    assert stats.degraded is None


def test_entries_expire_after_the_ttl(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path, ttl_s=120)
    cache.set("k", {"a": 1})
    assert cache._store is not None
    _, expire_at = cache._store.get("k", expire_time=True)
    assert expire_at == pytest.approx(time.time() + 120, abs=5)


def test_survives_reopen(tmp_path: Path) -> None:
    ResultCache(tmp_path).set("k", {"a": 1})
    hit = ResultCache(tmp_path).get("k")
    assert hit is not None and hit.result == {"a": 1}


def test_clear(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    cache.set("a", {})
    cache.set("b", {})
    assert cache.clear() == 2 and cache.get("a") is None


def test_corrupt_cache_degrades_to_no_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "cache.db").write_bytes(b"this is not sqlite" * 100)
    cache = ResultCache(tmp_path)
    cache.set("k", {"a": 1})  # must not raise
    assert cache.get("k") is None
    assert cache.degraded is not None
    assert "result cache disabled" in caplog.text


def test_unwritable_location_degrades(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = ResultCache(blocker / "cache")
    cache.set("k", {})
    assert cache.get("k") is None and cache.degraded is not None
    with cache.single_flight("k"):  # still usable as a lock within the process
        pass


def test_bad_ttl_is_a_field_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ttl"):
        ResultCache(tmp_path, ttl_s=0)


def test_single_flight_across_threads(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    computed: list[int] = []
    barrier = threading.Barrier(20)

    def caller() -> None:
        barrier.wait()
        with cache.single_flight("k"):
            if cache.get("k") is None:
                computed.append(1)
                cache.set("k", {"v": 1})

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == [1]


def test_a_degraded_result_is_cached_briefly_and_says_so(tmp_path: Path) -> None:
    from engine.run.runner import RunSettings
    from engine.service import Engine
    from engine.sources.snapshot import scenario
    from tests.support.simulated import simulated

    cache = ResultCache(tmp_path, ttl_s=300, degraded_ttl_s=45)
    with simulated(faults={"SecurityAnalyst": "error"}) as (_, backend):
        engine = Engine(backend, cache=cache)
        degraded = engine.analyze(scenario("error-spike"), RunSettings())
        again = engine.analyze(scenario("error-spike"), RunSettings())
    with simulated() as (_, backend):
        whole = Engine(backend, cache=cache).analyze(scenario("error-spike"), RunSettings())
    assert degraded.agents_participated == 4 and degraded.cache.ttl_s == 45
    assert again.cache.hit and again.cache.ttl_s == 45
    assert whole.agents_participated == 5 and whole.cache.ttl_s == 300
    assert cache._store is not None
    expiries = sorted(
        cache._store.get(key, expire_time=True)[1] - time.time() for key in cache._store.iterkeys()
    )
    assert expiries[0] == pytest.approx(45, abs=5) and expiries[1] == pytest.approx(300, abs=5)


def test_bad_degraded_ttl_is_a_field_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="degraded-ttl"):
        ResultCache(tmp_path, degraded_ttl_s=-1)
