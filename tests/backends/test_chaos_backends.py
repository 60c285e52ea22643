"""The streaming skeleton's safety rules against the chaos server: what is retried (and
what is not), that retries stay inside the caller's timeout, and that an oversize answer
keeps memory bounded."""

from __future__ import annotations

import asyncio
import time
import tracemalloc

import pytest

from engine.backends.base import BackendError, ChatRequest
from engine.backends.ollama import OllamaBackend
from engine.backends.openai_compat import OpenAICompatBackend
from engine.backends.streaming import AnswerCaps, LineSplitter, RetryPolicy, retry_after_s
from tests.support.chaos_server import DROP_REUSED, ChaosServer

AGENT = "SecurityAnalyst"


def request(agent: str = AGENT) -> ChatRequest:
    return ChatRequest(model="m", system="s", user="u", agent=agent)


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
async def test_request_dropped_on_a_reused_connection_is_retried_once(protocol: str) -> None:
    with ChaosServer({AGENT: DROP_REUSED}) as server:
        backend = (
            OllamaBackend(server.url)
            if protocol == "ollama"
            else OpenAICompatBackend(server.url + "/v1")
        )
        try:
            first = await backend.chat(request())
            # The second request goes out on the kept-alive connection, which the server
            # closes without a byte: the backend sends it again on a new connection.
            second = await backend.chat(request())
        finally:
            await backend.aclose()
        assert first.content == second.content
        assert server.requests[AGENT] == 3
        assert server.connections_opened == 2
        assert server.wait_idle(2.0)


async def test_http_500_is_not_retried() -> None:
    with ChaosServer({AGENT: "http_500"}) as server:
        backend = OllamaBackend(server.url)
        with pytest.raises(BackendError, match="HTTP 500"):
            await backend.chat(request())
        await backend.aclose()
        assert server.requests[AGENT] == 1


async def test_retry_after_longer_than_we_wait_fails_at_once() -> None:
    with ChaosServer({AGENT: "busy_retry_after_once"}) as server:
        backend = OllamaBackend(server.url, retry=RetryPolicy(max_wait_s=0.5))
        started = time.perf_counter()
        with pytest.raises(BackendError) as caught:
            await backend.chat(request())
        await backend.aclose()
    message = str(caught.value)
    assert "HTTP 503" in message and "retry after 1 s" in message and "longer than" in message
    assert time.perf_counter() - started < 0.5
    assert server.requests[AGENT] == 1


async def test_busy_retries_stay_inside_the_callers_timeout() -> None:
    many = RetryPolicy(busy_attempts=1000, busy_backoff_s=0.2, max_wait_s=60)
    with ChaosServer({AGENT: "busy_forever"}) as server:
        backend = OpenAICompatBackend(server.url, retry=many)
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await backend.chat(request())
        elapsed = time.perf_counter() - started
        await backend.aclose()
        assert server.wait_idle(2.0)
    assert 1.0 <= elapsed < 1.3
    assert 2 <= server.requests[AGENT] <= 4  # 0.2, 0.4, 0.8 s backoff: 3 waits fit in 1 s


@pytest.mark.parametrize(
    ("fault", "words"), [("oversize", "exceeded 4096 KiB"), ("endless", "exceeded 16384 chunks")]
)
async def test_runaway_answer_is_cut_off_with_bounded_memory(fault: str, words: str) -> None:
    caps = AnswerCaps(max_bytes=4 * 1024 * 1024)
    with ChaosServer({AGENT: fault}) as server:
        backend = OllamaBackend(server.url, caps=caps)
        tracemalloc.start()
        try:
            with pytest.raises(BackendError, match=words):
                await backend.chat(request())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await backend.aclose()
        assert server.wait_idle(2.0)
    # The server had 64 MiB (or no end) to send; the client held about its cap, never more.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


async def test_endless_answer_is_cut_at_the_chunk_cap_from_max_tokens() -> None:
    with ChaosServer({AGENT: "endless"}) as server:
        backend = OpenAICompatBackend(server.url)
        capped = ChatRequest(model="m", system="s", user="u", agent=AGENT, max_tokens=100)
        with pytest.raises(BackendError, match=r"exceeded 264 chunks"):
            await backend.chat(capped)
        await backend.aclose()
        assert server.wait_idle(2.0)


def test_line_splitter_keeps_partial_lines_and_crlf() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: a\r\n\r\ndata: \xc3") == ["data: a", ""]
    assert splitter.feed(b"\xa9\n") == ["data: é"]
    assert splitter.feed(b"tail") == []
    assert splitter.end() == ["tail"]
    assert splitter.end() == []


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("7", 7.0), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert retry_after_s(value) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    now = 1_445_412_400.0  # 07:26:40 GMT on that day
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 80.0
