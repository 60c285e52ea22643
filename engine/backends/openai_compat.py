"""OpenAI-compatible `/v1/chat/completions` backend (vLLM, llama.cpp, LM Studio, Ollama /v1,
OpenAI).

The SSE handling (`SSEDecoder`, `OpenAIStream`, `chat_result`) is pure so it can be tested
without sockets; `OpenAICompatBackend` only moves bytes and turns failures into one-line
`BackendError`s. The API key lives in one private attribute and is scrubbed from every
message this module builds.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine.backends.base import (
    BackendError,
    ChatRequest,
    ChatResult,
    ServerStatus,
    TokenProgress,
)
from engine.backends.http import LoopBoundClient

logger = logging.getLogger(__name__)

DONE = "[DONE]"
_MS = 1e-3
_STATUS_TIMEOUT_S = 2.0
# A dead host that drops packets would otherwise hold a call for the whole read timeout.
_DETAIL_CHARS = 300


class _Secret:
    """Holds the API key; its repr is masked so no repr(), vars() or log shows the key."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "'***'"

    def reveal(self) -> str:
        return self._value


def normalize_base_url(base_url: str) -> str:
    """`http://h:8080`, `http://h:8080/`, `http://h:8080/v1/` all become `http://h:8080/v1`.

    Only a path that does not already end in `/v1` gets it appended, so a proxy prefix such
    as `https://host/api` becomes `https://host/api/v1`.
    """
    split = urllib.parse.urlsplit(base_url.strip())
    path = split.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urllib.parse.urlunsplit((split.scheme, split.netloc, path, "", ""))


# --- Pure protocol handling --------------------------------------------------------------


class OpenAIStreamError(Exception):
    """The response broke the protocol or reported an error (one line, no context yet)."""


def one_line(text: str, limit: int = _DETAIL_CHARS) -> str:
    """Collapse whitespace and cut to `limit` chars so server text fits one message line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_message(payload: Any) -> str:
    """The human part of the error shapes these servers use."""
    if isinstance(payload, dict):
        for key in ("error", "message", "detail", "msg"):
            if payload.get(key):
                return error_message(payload[key])
        return one_line(json.dumps(payload))
    if isinstance(payload, list) and payload:  # FastAPI validation errors
        return error_message(payload[0])
    return one_line(str(payload))


def error_detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        return error_message(json.loads(text))
    except ValueError:
        return one_line(text) or "(empty body)"


class SSEDecoder:
    """Minimal text/event-stream decoder: feed it lines, get each event's data back.

    Follows the WHATWG rules for what these servers send: `data:` lines of one event are
    joined with newlines and dispatched at the blank line; `:` comments and other fields
    are ignored.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed_line(self, line: str) -> str | None:
        """Take one line (without its newline); return an event's data when one completes."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """Dispatch a pending event; at end of stream this accepts a missing final blank line."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


@dataclass
class OpenAIStream:
    """Folds chat-completion chunks (or one whole response) into one reply."""

    parts: list[str] = field(default_factory=list)
    chunks: int = 0
    done: bool = False
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)

    def feed_data(self, data: str) -> str:
        """Take one SSE event's data; return the content it added ('' for none)."""
        if data.strip() == DONE:
            self.done = True
            return ""
        try:
            obj = json.loads(data)
        except ValueError:
            raise OpenAIStreamError(
                f"invalid JSON event from server: {one_line(data, 80)!r}"
            ) from None
        if not isinstance(obj, dict):
            raise OpenAIStreamError(f"expected a JSON object, got: {one_line(data, 80)!r}")
        return self.feed(obj)

    def feed(self, obj: Mapping[str, Any]) -> str:
        if obj.get("error"):
            raise OpenAIStreamError(f"server error: {error_message(obj['error'])}")
        piece = ""
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            # Streamed chunks carry `delta`, a whole (non-streamed) response `message`.
            message = choice.get("delta") or choice.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str) and content:
                piece = content
                self.parts.append(piece)
                self.chunks += 1
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        if isinstance(obj.get("usage"), dict):
            self.usage = dict(obj["usage"])
        if isinstance(obj.get("timings"), dict):  # llama.cpp only
            self.timings = dict(obj["timings"])
        self.last = dict(obj)
        return piece

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def result(self, ttft_s: float | None, elapsed_s: float) -> ChatResult:
        if not (self.done or self.finish_reason):
            raise OpenAIStreamError("stream ended early (no finish_reason or [DONE])")
        return chat_result(self, ttft_s, elapsed_s)


def _num(source: Mapping[str, Any], key: str) -> float | None:
    value = source.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(*values: float | None) -> int | None:
    known = [v for v in values if v is not None]
    return int(sum(known)) if known else None


def chat_result(stream: OpenAIStream, ttft_s: float | None, elapsed_s: float) -> ChatResult:
    """Usage gives token counts; llama.cpp's `timings` (milliseconds) give prefill/decode."""
    prompt_ms = _num(stream.timings, "prompt_ms")
    predicted_ms = _num(stream.timings, "predicted_ms")
    prefill_s = prompt_ms * _MS if prompt_ms is not None else None
    decode_s = predicted_ms * _MS if predicted_ms is not None else None
    queue_s = None
    if prefill_s is not None and decode_s is not None:
        # An estimate: the client's wall time not spent computing is mostly the wait for a
        # free slot (llama.cpp --parallel), plus small HTTP overheads.
        queue_s = max(0.0, elapsed_s - prefill_s - decode_s)
    prompt_tokens = _count(_num(stream.usage, "prompt_tokens"))
    if prompt_tokens is None:  # llama.cpp's prompt_n excludes the cached prefix
        prompt_tokens = _count(_num(stream.timings, "prompt_n"), _num(stream.timings, "cache_n"))
    output_tokens = _count(_num(stream.usage, "completion_tokens"))
    if output_tokens is None:
        output_tokens = _count(_num(stream.timings, "predicted_n"))
    raw = dict(stream.last)
    if stream.usage:
        raw["usage"] = stream.usage
    if stream.timings:
        raw["timings"] = stream.timings
    return ChatResult(
        content=stream.content,
        ttft_s=ttft_s,
        total_s=elapsed_s,
        queue_s=queue_s,
        load_s=None,
        prefill_s=prefill_s,
        decode_s=decode_s,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        raw_final=raw,
        finish_reason=stream.finish_reason,
        cached_tokens=_count(_num(stream.timings, "cache_n")),
    )


def build_chat_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [
            {"role": "system", "content": request.system},
            {"role": "user", "content": request.user},
        ],
        "stream": request.stream,
        "temperature": request.temperature,
    }
    if request.stream:
        # Servers reject stream_options on non-streamed calls.
        body["stream_options"] = {"include_usage": True}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "quorum_output", "schema": request.schema, "strict": False},
        }
    return body


# --- I/O ---------------------------------------------------------------------------------


class OpenAICompatBackend:
    """Talks to one OpenAI-compatible server; bound to the event loop of its first call."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.kind = "openai"
        self.base_url = normalize_base_url(base_url)
        self.simulated = False
        self._api_key = _Secret(api_key) if api_key else None
        self._http = LoopBoundClient(
            self.base_url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transport,
            owner=repr(self),
        )

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self.base_url!r}, api_key={self._api_key!r})"

    async def open(self) -> None:
        self._http.get()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _headers(self, agent: str | None = None) -> dict[str, str]:
        # Sent per request rather than stored on the client, so the key sits in one place.
        headers: dict[str, str] = {}
        if agent is not None:
            headers["X-Quorum-Agent"] = agent
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers

    def _error(self, message: str) -> BackendError:
        # Servers echo keys back ("Incorrect API key provided: sk-..."); never pass them on.
        if self._api_key is not None:
            message = message.replace(self._api_key.reveal(), "***")
        return BackendError(message)

    async def chat(
        self, request: ChatRequest, on_tokens: TokenProgress | None = None
    ) -> ChatResult:
        client = self._http.get()
        model = request.model
        reply = OpenAIStream()
        ttft_s: float | None = None
        logger.debug(
            "openai chat: model=%s agent=%s stream=%s", model, request.agent, request.stream
        )
        started = time.perf_counter()

        def take(data: str) -> None:
            nonlocal ttft_s
            if reply.feed_data(data):
                if ttft_s is None:
                    ttft_s = time.perf_counter() - started
                if on_tokens is not None:
                    on_tokens(reply.chunks)

        # The error is raised after the `try`, so no httpx exception (whose request carries
        # the Authorization header) ends up chained onto the BackendError.
        failure: str
        try:
            async with client.stream(
                "POST",
                "chat/completions",
                json=build_chat_body(request),
                headers=self._headers(request.agent),
            ) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    failure = self._status_message(model, response.status_code, body)
                elif request.stream:
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        data = decoder.feed_line(line)
                        if data is not None:
                            take(data)
                    tail = decoder.flush()
                    if tail is not None:
                        take(tail)
                else:
                    take((await response.aread()).decode("utf-8", "replace"))
                    reply.done = True  # a whole JSON body is complete by definition
            if response.status_code == 200:
                return reply.result(ttft_s, time.perf_counter() - started)
        except OpenAIStreamError as exc:
            failure = f"model '{model}' at {self.base_url}: {exc}"
        except httpx.TimeoutException as exc:
            failure = f"{self.base_url} timed out ({type(exc).__name__}) on model '{model}'"
        except httpx.ConnectError as exc:
            failure = f"cannot reach {self.base_url}: {one_line(str(exc)) or 'connect failed'}"
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            failure = (
                f"model '{model}' at {self.base_url}: stream ended early "
                f"({type(exc).__name__}: {one_line(str(exc))})"
            )
        except httpx.HTTPError as exc:
            failure = (
                f"request to {self.base_url} failed for model '{model}': "
                f"{type(exc).__name__}: {one_line(str(exc))}"
            )
        raise self._error(failure)

    def _status_message(self, model: str, status: int, body: bytes) -> str:
        where = f"{self.base_url}/chat/completions"
        if status in (401, 403):
            # The body is left out: servers quote (part of) the rejected key in it.
            hint = "check the API key" if self._api_key is not None else "no API key is set"
            return f"authentication failed at {where} (HTTP {status}): {hint}"
        detail = error_detail(body)
        if status == 404:
            return (
                f"HTTP 404 from {where} for model '{model}': {detail}; check the model name "
                "(GET /v1/models lists them) and that the URL serves an OpenAI-compatible API"
            )
        if status == 429:
            return (
                f"{where} is rate-limiting or overloaded (HTTP 429) for model '{model}': {detail}"
            )
        if status == 503:
            return f"{where} is busy or still loading (HTTP 503) for model '{model}': {detail}"
        return f"{where} returned HTTP {status} for model '{model}': {detail}"

    async def status(self) -> ServerStatus:
        client = self._http.get()
        failure: str
        try:
            response = await client.get(
                "models", headers=self._headers(), timeout=_STATUS_TIMEOUT_S
            )
            if response.status_code in (401, 403):
                failure = f"authentication failed at {self.base_url} (HTTP {response.status_code})"
            elif response.status_code != 200:
                failure = f"HTTP {response.status_code} from {self.base_url}/models: {error_detail(response.content)}"
            else:
                entries = response.json().get("data")
                models = [
                    str(entry["id"])
                    for entry in (entries if isinstance(entries, list) else [])
                    if isinstance(entry, dict) and entry.get("id")
                ]
                return ServerStatus(reachable=True, models=models)
        except httpx.ConnectError as exc:
            failure = f"cannot reach {self.base_url}: {one_line(str(exc))}"
        except Exception as exc:  # a status probe must never raise; CancelledError still does
            failure = f"{self.base_url}: {type(exc).__name__}: {one_line(str(exc))}"
        return ServerStatus(reachable=False, error=str(self._error(failure)))
