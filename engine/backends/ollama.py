"""Ollama's native `/api/chat` backend.

The NDJSON handling (`parse_ndjson_line`, `OllamaStream`, `chat_result`) is pure so it can
be tested without sockets; `OllamaBackend` only moves bytes and turns failures into one-line
`BackendError`s.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine.backends.base import ChatRequest, ChatResult, ServerStatus
from engine.backends.http import scrub, url_secrets
from engine.backends.shell import STATUS_TIMEOUT_S, HttpBackend
from engine.backends.streaming import (
    DEFAULT_CAPS,
    DEFAULT_RETRY,
    AnswerCaps,
    ProtocolError,
    RetryPolicy,
    get_json,
    one_line,
)
from engine.backends.streaming import error_detail as error_detail  # re-exported for callers
from engine.redact import redact_url

logger = logging.getLogger(__name__)

# The kind names of engine/backends/registry.py this module's backend reports (the
# simulated server speaks Ollama's protocol, so the same class talks to it).
OLLAMA = "ollama"
SIMULATED = "simulated"
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
_DEFAULT_PORT = 11434
_NS = 1e-9


# --- OLLAMA_HOST -------------------------------------------------------------------------


def parse_ollama_host(value: str | None) -> str:
    """Turn an `OLLAMA_HOST` value into a base URL the way Ollama's own clients do.

    Follows ollama-python's `_parse_host`: scheme defaults to http and port to 11434, but an
    explicit http:// or https:// scheme defaults the port to 80 / 443; a bare `:port` means
    127.0.0.1; IPv6 stays bracketed; a path is kept without its trailing slash. Like Ollama's
    Go client it also strips surrounding quotes and spaces, which shell exports sometimes
    carry. "0.0.0.0" is kept as is: neither official client rewrites it.
    """
    host = (value or "").strip().strip("\"'").strip()
    port = _DEFAULT_PORT
    scheme, sep, hostport = host.partition("://")
    if not sep:
        scheme, hostport = "http", host
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443

    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    hostname = split.hostname or "127.0.0.1"
    try:
        port = split.port or port
    except ValueError:
        # Ollama's Go client falls back to the default port rather than refusing to start.
        logger.warning("OLLAMA_HOST has an invalid port; using %d", port)

    try:
        if isinstance(ipaddress.ip_address(hostname), ipaddress.IPv6Address):
            hostname = f"[{hostname}]"  # urlsplit drops the brackets a URL needs
    except ValueError:
        pass

    path = split.path.strip("/")
    return f"{scheme}://{hostname}:{port}/{path}" if path else f"{scheme}://{hostname}:{port}"


def ollama_base_url(env: Mapping[str, str] | None = None) -> str:
    """Base URL from `OLLAMA_HOST` in `env` (default: the process environment)."""
    source = os.environ if env is None else env
    return parse_ollama_host(source.get("OLLAMA_HOST"))


# --- Pure protocol handling --------------------------------------------------------------


class OllamaStreamError(ProtocolError):
    """The response broke the protocol or reported an error (one line, no context yet)."""


def parse_ndjson_line(line: str | bytes) -> dict[str, Any] | None:
    """Decode one NDJSON line; None for a blank line."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise OllamaStreamError(f"invalid JSON line from server: {one_line(text, 80)!r}") from None
    if not isinstance(payload, dict):
        raise OllamaStreamError(f"expected a JSON object, got: {one_line(text, 80)!r}")
    return payload


def _number(final: Mapping[str, Any], key: str) -> int:
    # Ollama omits zero-valued fields, so absent means 0, not unknown.
    value = final.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def chat_result(content: str, final: Mapping[str, Any], ttft_s: float | None) -> ChatResult:
    """Map the `done: true` object's nanosecond timings onto a ChatResult in seconds."""
    total = _number(final, "total_duration")
    load = _number(final, "load_duration")
    prefill = _number(final, "prompt_eval_duration")
    decode = _number(final, "eval_duration")
    # Ollama measures load_duration before a request waits for a free slot; that wait is
    # only inside total_duration, so the unexplained remainder is queueing.
    queue = max(0, total - load - prefill - decode)
    return ChatResult(
        content=content,
        ttft_s=ttft_s,
        total_s=total * _NS,
        queue_s=queue * _NS,
        load_s=load * _NS,
        prefill_s=prefill * _NS,
        decode_s=decode * _NS,
        prompt_tokens=_number(final, "prompt_eval_count"),
        output_tokens=_number(final, "eval_count"),
        raw_final=dict(final),
        finish_reason=str(final["done_reason"]) if final.get("done_reason") else None,
        cached_tokens=_number(final, "prompt_cache_count")
        if "prompt_cache_count" in final
        else None,
    )


@dataclass
class OllamaStream:
    """Folds parsed response objects into one reply; knows nothing about sockets."""

    parts: list[str] = field(default_factory=list)
    chunks: int = 0
    final: dict[str, Any] | None = None

    def feed(self, obj: Mapping[str, Any]) -> str:
        """Take one object and return the content it added ('' for none)."""
        if "error" in obj:
            raise OllamaStreamError(f"server error: {one_line(str(obj['error']))}")
        message = obj.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        piece = content if isinstance(content, str) else ""
        if piece:
            self.parts.append(piece)
            self.chunks += 1
        if obj.get("done") is True:
            self.final = dict(obj)
        return piece

    def feed_line(self, line: str) -> str:
        obj = parse_ndjson_line(line)
        return "" if obj is None else self.feed(obj)

    def feed_body(self, text: str) -> str:
        return self.feed_line(text)

    def end(self) -> None:
        pass  # NDJSON has nothing pending between lines

    @property
    def content(self) -> str:
        return "".join(self.parts)

    def result(self, ttft_s: float | None, elapsed_s: float = 0.0) -> ChatResult:
        if self.final is None:
            raise OllamaStreamError("stream ended early (no done:true object)")
        return chat_result(self.content, self.final, ttft_s)


def build_chat_body(request: ChatRequest) -> dict[str, Any]:
    options: dict[str, Any] = {"temperature": request.temperature}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [
            {"role": "system", "content": request.system},
            {"role": "user", "content": request.user},
        ],
        "stream": request.stream,
        "options": options,
    }
    if request.schema is not None:
        body["format"] = request.schema
    return body


# --- I/O ---------------------------------------------------------------------------------


class OllamaWire:
    """Ollama's half of the streaming skeleton: path, body, decoder and status wording."""

    path = "/api/chat"

    def __init__(self, base_url: str, secrets: list[str]) -> None:
        self.label = f"Ollama at {base_url}"
        self._secrets = secrets

    def body(self, request: ChatRequest) -> dict[str, Any]:
        return build_chat_body(request)

    def headers(self, request: ChatRequest | None) -> dict[str, str]:
        return {} if request is None else {"X-Quorum-Agent": request.agent}

    def decoder(self) -> OllamaStream:
        return OllamaStream()

    def scrub(self, message: str) -> str:
        return scrub(message, self._secrets)

    def status_message(self, model: str, status: int, body: bytes) -> str:
        detail = error_detail(body)
        where = self.label
        if status == 404:
            hint = (
                f"try `ollama pull {model}`"
                if "model" in detail.lower()
                else "check that the URL points at an Ollama server"
            )
            return f"{where}: {detail} (HTTP 404); {hint}"
        if status == 503:
            return (
                f"{where} is busy ({detail}, HTTP 503): its request queue is full; "
                "run fewer agents at once or raise OLLAMA_MAX_QUEUE on the server"
            )
        return f"{where} returned HTTP {status} for model '{model}': {detail}"


class OllamaBackend(HttpBackend):
    """Talks to one Ollama server (or the simulated one); bound to the event loop of its
    first call."""

    def __init__(
        self,
        base_url: str,
        *,
        simulated: bool = False,
        timeout_s: float = 300.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
        caps: AnswerCaps = DEFAULT_CAPS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        shown = redact_url(base_url.rstrip("/"))
        super().__init__(
            kind=SIMULATED if simulated else OLLAMA,
            shown_url=shown,
            client_url=base_url.rstrip("/"),
            wire=OllamaWire(shown, url_secrets(base_url)),
            simulated=simulated,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transport,
            caps=caps,
            retry=retry,
        )

    def __repr__(self) -> str:
        return f"OllamaBackend(base_url={self.base_url!r}, kind={self.kind!r})"

    async def fetch_status(self, client: httpx.AsyncClient) -> ServerStatus:
        version_info = await get_json(client, self._wire, "/api/version", STATUS_TIMEOUT_S)
        tags = await get_json(client, self._wire, "/api/tags", STATUS_TIMEOUT_S)
        version = version_info.get("version")
        entries = tags.get("models")
        models = [
            str(entry["name"])
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict) and entry.get("name")
        ]
        return ServerStatus(
            reachable=True, version=str(version) if version else None, models=models
        )
