"""OllamaBackend: the pure NDJSON layer directly, then the backend over a loopback server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Any

import httpx
import pytest

from bench.plumbing import free_port
from engine.backends.base import BackendError, ChatRequest
from engine.backends.ollama import (
    DEFAULT_OLLAMA_URL,
    OllamaBackend,
    OllamaStream,
    OllamaStreamError,
    chat_result,
    error_detail,
    ollama_base_url,
    parse_ndjson_line,
    parse_ollama_host,
)
from tests.support.loopback import LoopbackServer, Route

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
MODEL = "qwen3:4b"


def make_request(**changes: Any) -> ChatRequest:
    base = ChatRequest(
        model=MODEL, system="be brief", user="cpu is 97%", agent="cpu-agent", schema=SCHEMA
    )
    return dataclasses.replace(base, **changes)


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def part(text: str) -> bytes:
    return line({"model": MODEL, "message": {"role": "assistant", "content": text}, "done": False})


# load_duration is omitted, as Ollama does when the model was already loaded.
FINAL: dict[str, Any] = {
    "model": MODEL,
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 5_000_000_000,
    "prompt_eval_count": 40,
    "prompt_eval_duration": 1_000_000_000,
    "eval_count": 12,
    "eval_duration": 2_500_000_000,
}


async def failing_chat(route: Route, **changes: Any) -> str:
    with LoopbackServer({"/api/chat": route}) as server:
        backend = OllamaBackend(server.url)
        try:
            with pytest.raises(BackendError) as caught:
                await backend.chat(make_request(**changes))
        finally:
            await backend.aclose()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- OLLAMA_HOST ------------------------------------------------------------------------

V6 = "[0001:002:003:0004::1]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":56789", "http://127.0.0.1:56789"),
        ("1.2.3.4:56789", "http://1.2.3.4:56789"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
        ("example.com", "http://example.com:11434"),
        ("example.com:56789/", "http://example.com:56789"),
        ("example.com/path", "http://example.com:11434/path"),
        ("https://example.com:56789/path/", "https://example.com:56789/path"),
        (V6, f"http://{V6}:11434"),
        (f"{V6}:56789", f"http://{V6}:56789"),
        (f"https://{V6}", f"https://{V6}:443"),
        (f"{V6}:56789/path/", f"http://{V6}:56789/path"),
        ('"10.0.0.5:8080"', "http://10.0.0.5:8080"),
        ("  example.com  ", "http://example.com:11434"),
        ("example.com:99999", "http://example.com:11434"),
    ],
)
def test_parse_ollama_host(value: str | None, expected: str) -> None:
    assert parse_ollama_host(value) == expected


def test_ollama_base_url_reads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ollama_base_url({}) == DEFAULT_OLLAMA_URL
    assert ollama_base_url({"OLLAMA_HOST": "gpu-box:9000"}) == "http://gpu-box:9000"
    monkeypatch.setenv("OLLAMA_HOST", "https://ollama.internal")
    assert ollama_base_url() == "https://ollama.internal:443"


# --- Pure NDJSON layer -----------------------------------------------------------------


def test_parse_ndjson_line() -> None:
    assert parse_ndjson_line("") is None
    assert parse_ndjson_line(b"  \r\n") is None
    assert parse_ndjson_line(b'{"done": true}\n') == {"done": True}
    with pytest.raises(OllamaStreamError, match="invalid JSON"):
        parse_ndjson_line("{not json")
    with pytest.raises(OllamaStreamError, match="JSON object"):
        parse_ndjson_line("[1, 2]")


def test_stream_accumulates_and_maps_timings() -> None:
    reply = OllamaStream()
    assert reply.feed(json.loads(part("Hel"))) == "Hel"
    assert reply.feed({"message": {"role": "assistant", "content": ""}, "done": False}) == ""
    assert reply.feed(json.loads(part("lo"))) == "lo"
    reply.feed(FINAL)
    result = reply.result(ttft_s=0.25)
    assert (result.content, reply.chunks) == ("Hello", 2)
    assert result.ttft_s == 0.25
    assert result.total_s == pytest.approx(5.0)
    assert result.load_s == 0.0  # omitted field means zero, not unknown
    assert result.prefill_s == pytest.approx(1.0)
    assert result.decode_s == pytest.approx(2.5)
    assert result.queue_s == pytest.approx(1.5)  # 5 - 0 - 1 - 2.5
    assert (result.prompt_tokens, result.output_tokens) == (40, 12)
    assert result.raw_final["done_reason"] == "stop"


def test_queue_is_never_negative_and_missing_counts_are_zero() -> None:
    result = chat_result(
        "x", {"done": True, "total_duration": 10, "load_duration": 20, "eval_duration": 5}, None
    )
    assert result.queue_s == 0.0
    assert (result.prompt_tokens, result.output_tokens, result.prefill_s) == (0, 0, 0.0)


def test_stream_errors() -> None:
    with pytest.raises(OllamaStreamError, match="server error: out of memory"):
        OllamaStream().feed({"error": "out of memory"})
    reply = OllamaStream()
    reply.feed(json.loads(part("partial")))
    with pytest.raises(OllamaStreamError, match="stream ended early"):
        reply.result(ttft_s=None)


def test_error_detail() -> None:
    assert error_detail(b'{"error":"model \'x\' not found"}') == "model 'x' not found"
    assert error_detail(b"404 page\nnot found") == "404 page not found"
    assert error_detail(b"") == "(empty body)"


# --- End to end over HTTP --------------------------------------------------------------


async def test_streaming_chat_end_to_end() -> None:
    route = Route(chunks=[part("Hel"), part("lo"), part(" there"), line(FINAL)])
    progress: list[int] = []
    with LoopbackServer({"/api/chat": route}) as server:
        backend = OllamaBackend(server.url)
        result = await backend.chat(make_request(max_tokens=256), on_tokens=progress.append)
        await backend.aclose()

    assert result.content == "Hello there"
    assert progress == [1, 2, 3]
    assert result.ttft_s is not None and 0 <= result.ttft_s < 5
    assert result.queue_s == pytest.approx(1.5)
    assert result.load_s == 0.0
    assert result.output_tokens == 12

    [sent] = server.requests
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert sent.headers["x-quorum-agent"] == "cpu-agent"
    assert sent.json == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "cpu is 97%"},
        ],
        "stream": True,
        "format": SCHEMA,
        "options": {"temperature": 0.2, "num_predict": 256},
    }


async def test_non_streaming_chat_without_schema() -> None:
    whole = {**FINAL, "message": {"role": "assistant", "content": '{"ok": true}'}}
    progress: list[int] = []
    with LoopbackServer({"/api/chat": Route(chunks=[json.dumps(whole)])}) as server:
        backend = OllamaBackend(server.url)
        result = await backend.chat(
            make_request(stream=False, schema=None), on_tokens=progress.append
        )
        await backend.aclose()

    assert result.content == '{"ok": true}'
    assert progress == [1]
    assert result.ttft_s is not None
    assert result.total_s == pytest.approx(5.0)
    sent = server.requests[0].json
    assert sent["stream"] is False
    assert "format" not in sent
    assert sent["options"] == {"temperature": 0.2}


async def test_error_line_mid_stream_with_http_200() -> None:
    route = Route(chunks=[part("Hel"), line({"error": "llama runner process has terminated"})])
    message = await failing_chat(route)
    assert "llama runner process has terminated" in message
    assert MODEL in message


async def test_model_not_found() -> None:
    route = Route(status=404, chunks=[json.dumps({"error": f"model '{MODEL}' not found"})])
    message = await failing_chat(route)
    assert f"model '{MODEL}' not found" in message
    assert f"ollama pull {MODEL}" in message


async def test_server_busy() -> None:
    message = await failing_chat(Route(status=503, chunks=['{"error":"server busy"}']))
    assert "busy" in message
    assert "OLLAMA_MAX_QUEUE" in message


async def test_other_status_shows_server_message() -> None:
    route = Route(status=500, chunks=['{"error":"unexpected server status: 1"}'])
    message = await failing_chat(route)
    assert "HTTP 500" in message
    assert "unexpected server status: 1" in message


async def test_stream_ending_without_done() -> None:
    message = await failing_chat(Route(chunks=[part("Hel"), part("lo")]))
    assert "stream ended early" in message


async def test_connection_dropped_mid_body() -> None:
    message = await failing_chat(Route(chunks=[part("Hel")], abort=True))
    assert "stream ended early" in message


async def test_invalid_json_line() -> None:
    message = await failing_chat(Route(chunks=[part("Hel"), b"<html>oops</html>\n"]))
    assert "invalid JSON line" in message


async def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = OllamaBackend(url)
    with pytest.raises(BackendError, match=f"cannot reach Ollama at {url}"):
        await backend.chat(make_request())
    status = await backend.status()
    await backend.aclose()
    assert status.reachable is False
    assert status.error is not None and url in status.error


async def test_timeout_becomes_backend_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    backend = OllamaBackend("http://ollama.test", transport=httpx.MockTransport(handler))
    with pytest.raises(BackendError, match=r"timed out \(ReadTimeout\)"):
        await backend.chat(make_request())
    await backend.aclose()


async def test_cancellation_propagates_and_closes_the_stream() -> None:
    gate = threading.Event()  # never set: the server holds the stream open
    route = Route(chunks=[part("Hel"), gate, line(FINAL)])
    with LoopbackServer({"/api/chat": route}) as server:
        backend = OllamaBackend(server.url)
        first_token = asyncio.Event()
        task = asyncio.create_task(
            backend.chat(make_request(), on_tokens=lambda n: first_token.set())
        )
        await first_token.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The server notices the hang-up while still parked on the gate.
        assert await asyncio.to_thread(server.client_disconnected.wait, 5.0)
        await backend.aclose()


async def test_status_reports_version_and_models() -> None:
    routes = {
        "/api/version": Route(chunks=['{"version":"0.12.3"}']),
        "/api/tags": Route(
            chunks=[json.dumps({"models": [{"name": "qwen3:4b"}, {"name": "llama3.2:1b"}]})]
        ),
    }
    with LoopbackServer(routes) as server:
        backend = OllamaBackend(server.url, simulated=True)
        status = await backend.status()
        await backend.aclose()
    assert (status.reachable, status.version) == (True, "0.12.3")
    assert status.models == ["qwen3:4b", "llama3.2:1b"]
    assert (backend.kind, backend.simulated) == ("simulated", True)


async def test_status_never_raises_on_garbage() -> None:
    with LoopbackServer({"/api/version": Route(chunks=["<html>"])}) as server:
        backend = OllamaBackend(server.url)
        status = await backend.status()
        await backend.aclose()
    assert status.reachable is False
    assert status.error is not None and "invalid JSON" in status.error
    assert backend.kind == "ollama"


def test_backend_refuses_a_second_event_loop() -> None:
    backend = OllamaBackend(f"http://127.0.0.1:{free_port()}")
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(backend.status())  # creates the client in `first`
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(backend.chat(make_request()))
        first.run_until_complete(backend.aclose())
    finally:
        first.close()
