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
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine.backends.base import ChatRequest, ChatResult, ServerStatus
from engine.backends.http import scrub, strip_credentials, url_secrets
from engine.backends.shell import STATUS_TIMEOUT_S, HttpBackend
from engine.backends.streaming import (
    DEFAULT_CAPS,
    DEFAULT_RETRY,
    AnswerCaps,
    ProtocolError,
    RetryPolicy,
    error_message,
    get_json,
    one_line,
)
from engine.backends.streaming import error_detail as error_detail  # re-exported for callers
from engine.redact import redact_url

logger = logging.getLogger(__name__)

OPENAI = "openai"  # the kind name of engine/backends/registry.py this backend reports
DONE = "[DONE]"
_MS = 1e-3


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


class OpenAIStreamError(ProtocolError):
    """The response broke the protocol or reported an error (one line, no context yet)."""


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
    sse: SSEDecoder = field(default_factory=lambda: SSEDecoder())

    def feed_data(self, data: str) -> str:
        """Take one SSE event's data; return the content it added ('' for none)."""
        if data.strip() == DONE:
            self.done = True
            return ""
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
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

    def feed_line(self, line: str) -> str:
        """One line of the event stream; content when it completed an event."""
        data = self.sse.feed_line(line)
        return "" if data is None else self.feed_data(data)

    def feed_body(self, text: str) -> str:
        piece = self.feed_data(text)
        self.done = True  # a whole JSON body is complete by definition
        return piece

    def end(self) -> None:
        tail = self.sse.flush()
        if tail is not None:
            self.feed_data(tail)

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


class OpenAIWire:
    """The OpenAI protocol's half of the streaming skeleton: path, body, decoder, wording."""

    path = "chat/completions"

    def __init__(self, base_url: str, api_key: _Secret | None, secrets: list[str]) -> None:
        self.label = base_url
        self._api_key = api_key
        self._secrets = [s for s in secrets if s]

    def body(self, request: ChatRequest) -> dict[str, Any]:
        return build_chat_body(request)

    def headers(self, request: ChatRequest | None) -> dict[str, str]:
        # Sent per request rather than stored on the client, so the key sits in one place.
        headers: dict[str, str] = {}
        if request is not None:
            headers["X-Quorum-Agent"] = request.agent
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return headers

    def decoder(self) -> OpenAIStream:
        return OpenAIStream()

    def scrub(self, message: str) -> str:
        # Servers echo keys back ("Incorrect API key provided: sk-..."); never pass them on.
        return scrub(message, self._secrets)

    def status_message(self, model: str, status: int, body: bytes) -> str:
        where = f"{self.label}/chat/completions"
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


class OpenAICompatBackend(HttpBackend):
    """Talks to one OpenAI-compatible server; bound to the event loop of its first call."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
        caps: AnswerCaps = DEFAULT_CAPS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        real_url = normalize_base_url(base_url)
        shown = redact_url(real_url)
        self._api_key = _Secret(api_key) if api_key else None
        super().__init__(
            kind=OPENAI,
            shown_url=shown,
            # httpx turns URL credentials into a Basic Authorization header, which would
            # replace the Bearer key; with a key set, the key is what authenticates.
            client_url=strip_credentials(real_url) if api_key else real_url,
            wire=OpenAIWire(shown, self._api_key, [api_key or "", *url_secrets(real_url)]),
            simulated=False,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transport,
            caps=caps,
            retry=retry,
        )

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self.base_url!r}, api_key={self._api_key!r})"

    async def fetch_status(self, client: httpx.AsyncClient) -> ServerStatus:
        entries = (await get_json(client, self._wire, "models", STATUS_TIMEOUT_S)).get("data")
        models = [
            str(entry["id"])
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict) and entry.get("id")
        ]
        return ServerStatus(reachable=True, models=models)
