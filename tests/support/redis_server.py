"""pytest fixtures for a real `redis-server` (see bench/redis_server.py); without the
binary the tests are skipped loudly. tests/conftest.py offers them to every test module.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.redis_server import RedisServer, redis_server_binary
from tests.support.components import skip_loudly


def _binary_or_skip(request: pytest.FixtureRequest) -> str:
    binary = redis_server_binary()
    if binary is None:
        skip_loudly(
            request, "REDIS TESTS SKIPPED: redis-server not found (apt-get install redis-server)"
        )
        raise AssertionError("unreachable")  # skip_loudly raises pytest's Skipped
    return binary


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """One server for the whole session; tests keep apart by using their own key prefix
    or by flushing (see `redis_url`)."""
    binary = _binary_or_skip(request)
    with tempfile.TemporaryDirectory(prefix="quorum-redis-") as tmp:
        server = RedisServer(binary, Path(tmp)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, which the test may stop and start again."""
    server = RedisServer(_binary_or_skip(request), tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
