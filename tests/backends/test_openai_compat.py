"""OpenAICompatBackend: the pure SSE layer directly, then the backend over a loopback server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from typing import Any

import httpx
import pytest

from bench.plumbing import free_port
from engine.backends.base import BackendError, ChatRequest
from engine.backends.openai_compat import (
    OpenAICompatBackend,
    OpenAIStream,
    OpenAIStreamError,
    SSEDecoder,
    error_detail,
    normalize_base_url,
)
from tests.support.loopback import LoopbackServer, Route

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
MODEL = "qwen2.5-7b-instruct"
KEY = "sk-test-5f3c9a0d1e2b4c6a"
CHAT = "/v1/chat/completions"


def make_request(**changes: Any) -> ChatRequest:
    base = ChatRequest(
        model=MODEL, system="be brief", user="cpu is 97%", agent="cpu-agent", schema=SCHEMA
    )
    return dataclasses.replace(base, **changes)


def event(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def delta(text: str) -> str:
    return event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


FINISH = event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
USAGE = event({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 3}})
# llama.cpp reports its own timings in milliseconds.
TIMINGS = event(
    {
        "choices": [],
        "usage": {"prompt_tokens": 40, "completion_tokens": 3},
        "timings": {"prompt_n": 8, "prompt_ms": 120.0, "predicted_n": 3, "predicted_ms": 300.0},
    }
)
DONE = "data: [DONE]\n\n"


async def failing_chat(route: Route, api_key: str | None = KEY, **changes: Any) -> str:
    with LoopbackServer({CHAT: route}) as server:
        backend = OpenAICompatBackend(server.url, api_key=api_key)
        try:
            with pytest.raises(BackendError) as caught:
                await backend.chat(make_request(**changes))
        finally:
            await backend.aclose()
    message = str(caught.value)
    assert "\n" not in message
    assert KEY not in message and KEY not in repr(caught.value)
    # Nothing chained: httpx exceptions carry the request, Authorization header included.
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    return message


# --- Pure layer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
        ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("https://gw.example.com/llm", "https://gw.example.com/llm/v1"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


def test_sse_decoder() -> None:
    decoder = SSEDecoder()
    fed = [
        decoder.feed_line(text)
        for text in [": keep-alive", "", "event: x", "data: a", "data:b", "", "", "data: [DONE]"]
    ]
    assert fed == [None, None, None, None, None, "a\nb", None, None]
    assert decoder.flush() == "[DONE]"  # last event without its blank line still counts
    assert decoder.flush() is None


def test_stream_accumulates_usage_and_timings() -> None:
    reply = OpenAIStream()
    for chunk in [delta("Hel"), delta(""), delta("lo"), FINISH, TIMINGS, DONE]:
        reply.feed_data(chunk.removeprefix("data: ").strip())
    result = reply.result(ttft_s=0.1, elapsed_s=1.0)
    assert (result.content, reply.chunks, reply.finish_reason) == ("Hello", 2, "stop")
    assert (result.prompt_tokens, result.output_tokens) == (40, 3)
    assert result.prefill_s == pytest.approx(0.12)
    assert result.decode_s == pytest.approx(0.3)
    assert result.queue_s == pytest.approx(0.58)  # 1.0 - 0.12 - 0.3
    assert (result.total_s, result.load_s) == (1.0, None)


def test_stream_without_timings_leaves_queue_unknown() -> None:
    reply = OpenAIStream()
    for chunk in [delta("x"), FINISH, USAGE]:
        reply.feed_data(chunk.removeprefix("data: ").strip())
    result = reply.result(ttft_s=None, elapsed_s=2.0)
    assert (result.queue_s, result.prefill_s, result.decode_s) == (None, None, None)
    assert result.output_tokens == 3


def test_stream_errors() -> None:
    with pytest.raises(OpenAIStreamError, match="server error: context length exceeded"):
        OpenAIStream().feed_data(json.dumps({"error": {"message": "context length exceeded"}}))
    with pytest.raises(OpenAIStreamError, match="invalid JSON"):
        OpenAIStream().feed_data("{oops")
    reply = OpenAIStream()
    reply.feed_data(delta("x").removeprefix("data: ").strip())
    with pytest.raises(OpenAIStreamError, match="stream ended early"):
        reply.result(ttft_s=None, elapsed_s=1.0)


def test_error_detail_shapes() -> None:
    assert error_detail(b'{"error": {"message": "no such model", "code": 404}}') == "no such model"
    assert error_detail(b'{"error": "plain"}') == "plain"
    assert error_detail(b'{"detail": [{"msg": "field required"}]}') == "field required"
    assert error_detail(b"Bad Gateway") == "Bad Gateway"


# --- End to end over HTTP --------------------------------------------------------------


async def test_streaming_chat_end_to_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    route = Route(
        headers={"Content-Type": "text/event-stream"},
        chunks=[": ping\n\n", delta("Hel"), delta("lo"), FINISH, TIMINGS, DONE],
    )
    progress: list[int] = []
    with LoopbackServer({CHAT: route}) as server:
        backend = OpenAICompatBackend(server.url + "/", api_key=KEY)
        result = await backend.chat(make_request(max_tokens=64), on_tokens=progress.append)
        await backend.aclose()

    assert result.content == "Hello"
    assert progress == [1, 2]
    assert result.ttft_s is not None and result.total_s is not None
    assert 0 <= result.ttft_s <= result.total_s
    assert result.queue_s is not None and result.queue_s >= 0
    assert (result.prompt_tokens, result.output_tokens) == (40, 3)
    assert result.decode_s == pytest.approx(0.3)

    [sent] = server.requests
    assert sent.path == CHAT
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-quorum-agent"] == "cpu-agent"
    assert sent.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "cpu is 97%"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 64,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "quorum_output", "schema": SCHEMA, "strict": False},
        },
    }
    assert KEY not in repr(result) and KEY not in caplog.text


async def test_non_streaming_chat_without_key_or_schema() -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1},
    }
    with LoopbackServer({CHAT: Route(chunks=[json.dumps(body)])}) as server:
        backend = OpenAICompatBackend(server.url + "/v1")
        result = await backend.chat(make_request(stream=False, schema=None))
        await backend.aclose()

    assert (result.content, result.prompt_tokens, result.output_tokens) == ("{}", 9, 1)
    assert result.queue_s is None
    sent = server.requests[0]
    assert "authorization" not in sent.headers
    assert sent.json["stream"] is False
    assert "stream_options" not in sent.json and "response_format" not in sent.json


async def test_auth_failure_never_shows_the_key() -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}})
    message = await failing_chat(Route(status=401, chunks=[body]))
    assert "authentication failed" in message and "HTTP 401" in message


async def test_echoed_key_is_scrubbed_from_other_errors() -> None:
    message = await failing_chat(Route(status=500, chunks=[f'{{"error": "bad header {KEY}"}}']))
    assert "HTTP 500" in message and "bad header ***" in message


async def test_model_not_found() -> None:
    body = json.dumps({"error": {"message": f"The model `{MODEL}` does not exist."}})
    message = await failing_chat(Route(status=404, chunks=[body]))
    assert "does not exist" in message and MODEL in message and "HTTP 404" in message


@pytest.mark.parametrize(("status", "words"), [(429, "rate-limiting"), (503, "busy")])
async def test_busy_statuses(status: int, words: str) -> None:
    message = await failing_chat(Route(status=status, chunks=['{"error": {"message": "slots"}}']))
    assert words in message and f"HTTP {status}" in message and "slots" in message


async def test_error_event_mid_stream() -> None:
    route = Route(chunks=[delta("Hel"), event({"error": {"message": "KV cache full"}})])
    message = await failing_chat(route)
    assert "KV cache full" in message and MODEL in message


async def test_stream_ending_without_finish() -> None:
    message = await failing_chat(Route(chunks=[delta("Hel"), delta("lo")]))
    assert "stream ended early" in message


async def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = OpenAICompatBackend(url, api_key=KEY)
    with pytest.raises(BackendError, match=f"cannot reach {url}/v1") as caught:
        await backend.chat(make_request())
    status = await backend.status()
    await backend.aclose()
    assert caught.value.__cause__ is None
    assert status.reachable is False and status.error is not None and url in status.error


async def test_timeout_becomes_backend_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    backend = OpenAICompatBackend("http://llm.test", transport=httpx.MockTransport(handler))
    with pytest.raises(BackendError, match=r"timed out \(ConnectTimeout\)"):
        await backend.chat(make_request())
    await backend.aclose()


async def test_cancellation_propagates_and_closes_the_stream() -> None:
    gate = threading.Event()  # never set: the server holds the stream open
    route = Route(chunks=[delta("Hel"), gate, FINISH, DONE])
    with LoopbackServer({CHAT: route}) as server:
        backend = OpenAICompatBackend(server.url)
        first_token = asyncio.Event()
        task = asyncio.create_task(
            backend.chat(make_request(), on_tokens=lambda n: first_token.set())
        )
        await first_token.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(server.client_disconnected.wait, 5.0)
        await backend.aclose()


async def test_status_lists_models_with_auth() -> None:
    models = {"object": "list", "data": [{"id": "a", "object": "model"}, {"id": "b"}]}
    with LoopbackServer({"/v1/models": Route(chunks=[json.dumps(models)])}) as server:
        backend = OpenAICompatBackend(server.url, api_key=KEY)
        status = await backend.status()
        await backend.aclose()
    assert (status.reachable, status.models, status.version) == (True, ["a", "b"], None)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(status)


async def test_status_auth_failure() -> None:
    with LoopbackServer({"/v1/models": Route(status=401, chunks=[f'"{KEY}"'])}) as server:
        backend = OpenAICompatBackend(server.url, api_key=KEY)
        status = await backend.status()
        await backend.aclose()
    assert status.reachable is False
    assert status.error is not None and "authentication failed" in status.error
    assert KEY not in repr(status)


def test_key_hidden_from_repr_and_attributes() -> None:
    backend = OpenAICompatBackend("http://127.0.0.1:8080", api_key=KEY)
    assert KEY not in repr(backend) and KEY not in str(vars(backend))
    assert "api_key='***'" in repr(backend)
    assert "api_key=None" in repr(OpenAICompatBackend("http://127.0.0.1:8080"))
    assert (backend.kind, backend.simulated, backend.base_url) == (
        "openai",
        False,
        "http://127.0.0.1:8080/v1",
    )
