"""State selection: redaction, TTL choice, quorum.toml's [cache], and validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.redact import redact_url
from engine.store.base import ttl_for
from engine.store.disk import ResultCache
from engine.store.redis_store import RedisResultCache
from engine.store.state import StateConfig, cache_section, cache_url
from tests.support.results import a_result


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://user:pw@h.example/2", "rediss://***@h.example/2"),
        ("redis://user@h:1", "redis://h:1"),
        ("redis://[::1]:6379", "redis://[::1]:6379"),
        ("redis://:pw@[::1]:6379", "redis://***@[::1]:6379"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (
            "unix:///run/redis.sock?db=1&password=pw",
            "unix:///run/redis.sock?db=1&password=%2A%2A%2A",
        ),
        (
            "redis://h/0?password=pw&socket_timeout=1",
            "redis://h/0?password=%2A%2A%2A&socket_timeout=1",
        ),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_degraded_results_get_the_short_ttl() -> None:
    whole = a_result()
    assert ttl_for(whole, 300, 60) == 300
    whole.agents_participated = whole.agents_total - 1
    assert ttl_for(whole, 300, 60) == 60
    assert ttl_for(whole, 30, 60) == 30  # never longer than the normal TTL


def test_cache_section_and_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "quorum.toml"
    assert cache_section(toml) == {}
    toml.write_text('[cache]\nurl = "redis://h"\nttl = 100\nlease = 2.5\n', encoding="utf-8")
    section = cache_section(toml)
    assert section == {"url": "redis://h", "ttl": 100.0, "lease": 2.5}
    monkeypatch.delenv("QUORUM_CACHE_URL", raising=False)
    assert cache_url(section) == "redis://h"
    monkeypatch.setenv("QUORUM_CACHE_URL", "redis://env")
    assert cache_url(section) == "redis://env"
    toml.write_text("[cache]\nsize = 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cache\.size: unknown setting"):
        cache_section(toml)


def test_state_config_validation_never_echoes_the_password() -> None:
    with pytest.raises(ValueError, match="cache url") as err:
        StateConfig(url="memcached://:hunter2@h")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError, match="lease"):
        StateConfig(lease_s=0)
    config = StateConfig(url="redis://:hunter2@h:1")
    assert "hunter2" not in repr(config) and config.where == "redis://***@h:1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A bare user part is a token over HTTP (httpx sends it as Basic auth), a name in Redis.
        ("https://token@h/api", "https://***@h/api"),
        ("redis://token@h/0", "redis://h/0"),
        # The host is kept as written: IPv6 brackets too.
        ("https://u:p@[::1]:8443/v1", "https://***@[::1]:8443/v1"),
        # A password in the query is masked whatever the scheme; other queries stay as written.
        ("http://h/v1?password=pw", "http://h/v1?password=%2A%2A%2A"),
        ("redis://h/0?a=b%20c&flag", "redis://h/0?a=b%20c&flag"),
    ],
)
def test_one_redactor_for_llm_and_redis_urls(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("ttl", "degraded", "lease", "field"),
    [(0, 60, 10, "ttl"), (300, -1, 10, "degraded-ttl"), (300, 60, 0, "lease")],
)
def test_every_store_checks_its_ttls_the_same_way(
    ttl: float, degraded: float, lease: float, field: str, tmp_path: Path
) -> None:
    """StateConfig, the disk cache and the Redis cache share one check: one message each."""
    builds: list[Callable[[], object]] = [
        lambda: StateConfig(ttl_s=ttl, degraded_ttl_s=degraded, lease_s=lease),
        lambda: RedisResultCache(
            "redis://127.0.0.1:1", ttl_s=ttl, degraded_ttl_s=degraded, lease_s=lease
        ),
    ]
    if field != "lease":  # the disk cache has no lease
        builds.append(lambda: ResultCache(tmp_path, ttl_s=ttl, degraded_ttl_s=degraded))
    messages = set()
    for build in builds:
        with pytest.raises(ValueError) as err:
            build()
        messages.add(str(err.value))
    assert len(messages) == 1
    assert messages.pop().startswith(f"{field}: must be > 0 seconds, got ")
