"""State selection: redaction, TTL choice, quorum.toml's [cache], and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store.state import StateConfig, cache_section, cache_url, redact, ttl_for
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
    assert redact(url) == shown


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
