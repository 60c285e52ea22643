"""The streaming skeleton both real backends share.

A backend supplies only its protocol: where to POST, the JSON body, a decoder that turns
the response's lines into content, and its own wording for HTTP statuses. This module does
the rest, the same way for every protocol:

- reads the body as bytes and splits lines itself, so an answer is capped in bytes and in
  chunks (≈ tokens) *before* it is buffered: an endless or oversize answer ends as a
  one-line error with memory bounded by the cap;
- retries only where it is safe: once when the request failed before any response byte
  (a keep-alive connection the server had already closed), and on HTTP 503 after the
  server's `Retry-After` (or a short backoff), a bounded number of times. Every wait is an
  `asyncio.sleep` inside the caller's own timeout, so a retry can never outlive it;
- turns every failure into a one-line `BackendError` with no chained httpx exception (its
  request carries the Authorization header) and no secret in the text.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from engine.backends.base import (
    BackendError,
    ChatRequest,
    ChatResult,
    ServerStatus,
    TokenProgress,
)

logger = logging.getLogger(__name__)

_DETAIL_CHARS = 300
# An error body is only read this far: it is for a one-line message.
_ERROR_BODY_BYTES = 64 * 1024


class ProtocolError(Exception):
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
    """The server's own message from an error body (`{"error": ...}`), else its text."""
    text = body.decode("utf-8", "replace")
    try:
        return error_message(json.loads(text))
    except (ValueError, RecursionError):
        return one_line(text) or "(empty body)"


# --- caps and retries ----------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerCaps:
    """How much of one answer is read. Agents' answers are a few KB; the caps are far above
    that and exist so a runaway server cannot grow the client's memory without bound."""

    max_bytes: int = 8 * 1024 * 1024  # response body bytes, protocol framing included
    max_chunks: int = 16_384  # content chunks; servers stream about one token per chunk

    def chunks_for(self, max_tokens: int | None) -> int:
        # A server honouring max_tokens never sends more chunks than tokens; the slack
        # covers servers that count differently.
        if max_tokens is None:
            return self.max_chunks
        return min(self.max_chunks, 2 * max_tokens + 64)


@dataclass(frozen=True)
class RetryPolicy:
    busy_attempts: int = 3  # HTTP 503: tries in all
    busy_backoff_s: float = 0.25  # first wait when the server gives no Retry-After; doubles
    max_wait_s: float = 10.0  # a longer Retry-After fails now rather than waiting


DEFAULT_CAPS = AnswerCaps()
DEFAULT_RETRY = RetryPolicy()


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- line splitting ------------------------------------------------------------------------


class LineSplitter:
    """Bytes in, complete lines out (without `\\n` / `\\r\\n`). Holds at most one partial
    line, which the byte cap bounds."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self._pending += data
        if b"\n" not in data:
            return []
        *lines, rest = bytes(self._pending).split(b"\n")
        self._pending = bytearray(rest)
        # A "\n" byte never occurs inside a UTF-8 multi-byte sequence, so each line decodes
        # on its own.
        return [line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines]

    def end(self) -> list[str]:
        if not self._pending:
            return []
        tail, self._pending = bytes(self._pending), bytearray()
        return [tail.removesuffix(b"\r").decode("utf-8", "replace")]


# --- what a protocol supplies ----------------------------------------------------------------


class StreamDecoder(Protocol):
    """Folds one response into a reply; knows nothing about sockets."""

    @property
    def chunks(self) -> int: ...

    def feed_line(self, line: str) -> str:
        """Take one streamed line; return the content it added ('' for none)."""
        ...

    def feed_body(self, text: str) -> str:
        """Take a whole non-streamed body; return its content."""
        ...

    def end(self) -> None:
        """The stream ended: flush anything pending (may feed a last event)."""
        ...

    def result(self, ttft_s: float | None, elapsed_s: float) -> ChatResult:
        """The reply; ProtocolError if the stream ended before it was complete."""
        ...


class Wire(Protocol):
    """The protocol-specific half of a backend."""

    @property
    def label(self) -> str:
        """How messages name the server, e.g. "Ollama at http://h:11434"."""
        ...

    path: str

    def body(self, request: ChatRequest) -> dict[str, Any]: ...

    def headers(self, request: ChatRequest | None) -> dict[str, str]: ...

    def decoder(self) -> StreamDecoder: ...

    def status_message(self, model: str, status: int, body: bytes) -> str: ...

    def scrub(self, message: str) -> str:
        """Remove every secret this backend knows from a message."""
        ...


# --- the skeleton ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """An attempt that failed: its one-line message and whether it may be sent again.
    Returned, not raised, so no exception context (httpx's carries the request) survives."""

    message: str
    busy_wait_s: float | None = None  # HTTP 503: wait this long, then retry
    no_byte: bool = False  # died before any response byte: one retry on a fresh connection


async def stream_chat(
    client: httpx.AsyncClient,
    wire: Wire,
    request: ChatRequest,
    on_tokens: TokenProgress | None = None,
    *,
    caps: AnswerCaps = DEFAULT_CAPS,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ChatResult:
    """POST the request, stream the answer, return the reply or raise a one-line BackendError."""
    busy_tries = 0
    fresh_retry_used = False
    while True:
        outcome = await _attempt(client, wire, request, on_tokens, caps)
        if isinstance(outcome, ChatResult):
            return outcome
        message = outcome.message
        if outcome.no_byte and not fresh_retry_used:
            fresh_retry_used = True
            logger.info("retrying on a fresh connection: %s", wire.scrub(message))
            continue
        if outcome.busy_wait_s is None:
            raise BackendError(wire.scrub(message))
        busy_tries += 1
        if busy_tries >= retry.busy_attempts:
            raise BackendError(wire.scrub(f"{message} (gave up after {busy_tries} attempts)"))
        if outcome.busy_wait_s > retry.max_wait_s:
            raise BackendError(
                wire.scrub(
                    f"{message}; it asked to retry after {outcome.busy_wait_s:g} s, "
                    f"longer than Quorum waits ({retry.max_wait_s:g} s)"
                )
            )
        wait_s = outcome.busy_wait_s
        if wait_s == 0:  # no Retry-After: back off 0.25 s, 0.5 s, ...
            wait_s = retry.busy_backoff_s * 2 ** (busy_tries - 1)
        logger.info("server busy, retrying in %.2g s: %s", wait_s, wire.scrub(message))
        await asyncio.sleep(wait_s)  # inside the caller's own timeout, so cancellable


async def _attempt(
    client: httpx.AsyncClient,
    wire: Wire,
    request: ChatRequest,
    on_tokens: TokenProgress | None,
    caps: AnswerCaps,
) -> ChatResult | _Failure:
    """One POST of the request: the reply, or the failure as a message (never raised)."""
    model = request.model
    answered = False  # the status line and headers arrived: a retry is no longer safe
    logger.debug("chat: %s model=%s agent=%s", wire.label, model, request.agent)
    reader = _AnswerReader(wire.decoder(), caps, request, on_tokens)
    # Each failure becomes a message (`_failure`) and is returned, so no httpx exception
    # (whose request carries the Authorization header) is chained onto what is raised.
    try:
        async with client.stream(
            "POST", wire.path, json=wire.body(request), headers=wire.headers(request)
        ) as response:
            answered = True
            if response.status_code != 200:
                return await _status_failure(wire, model, response)
            await reader.read(response)
        return reader.result()
    except (ProtocolError, httpx.HTTPError) as exc:
        return _failure(exc, wire, model, answered)


class _AnswerReader:
    """Feeds one response's bytes to the protocol's decoder, within the answer caps, and
    times the first content chunk from when it was made (just before the request)."""

    def __init__(
        self,
        decoder: StreamDecoder,
        caps: AnswerCaps,
        request: ChatRequest,
        on_tokens: TokenProgress | None,
    ) -> None:
        self._decoder = decoder
        self._max_bytes = caps.max_bytes
        self._max_chunks = caps.chunks_for(request.max_tokens)
        self._stream = request.stream
        self._on_tokens = on_tokens
        self._started = time.perf_counter()
        self._ttft_s: float | None = None

    async def read(self, response: httpx.Response) -> None:
        splitter = LineSplitter()
        whole = bytearray()  # a non-streamed body, kept whole
        total = 0
        async for data in response.aiter_bytes():
            total += len(data)
            if total > self._max_bytes:
                raise ProtocolError(
                    f"answer exceeded {self._max_bytes // 1024} KiB and was cut off; "
                    "the server sent an oversize or endless answer"
                )
            if not self._stream:
                whole += data
                continue
            for line in splitter.feed(data):
                self._take(self._decoder.feed_line(line))
        if self._stream:
            for line in splitter.end():
                self._take(self._decoder.feed_line(line))
            self._decoder.end()
        else:
            self._take(self._decoder.feed_body(whole.decode("utf-8", "replace")))

    def _take(self, piece: str) -> None:
        if not piece:
            return
        if self._ttft_s is None:
            self._ttft_s = time.perf_counter() - self._started
        if self._decoder.chunks > self._max_chunks:
            raise ProtocolError(
                f"answer exceeded {self._max_chunks} chunks (≈ tokens) and was cut off; "
                "the server ignored the token cap or never stopped"
            )
        if self._on_tokens is not None:
            self._on_tokens(self._decoder.chunks)

    def result(self) -> ChatResult:
        return self._decoder.result(self._ttft_s, time.perf_counter() - self._started)


async def _status_failure(wire: Wire, model: str, response: httpx.Response) -> _Failure:
    """A status other than 200, in the protocol's words; HTTP 503 may be retried."""
    body = await _read_capped(response, _ERROR_BODY_BYTES)
    message = wire.status_message(model, response.status_code, body)
    if response.status_code == 503:
        wait = retry_after_s(response.headers.get("Retry-After"))
        return _Failure(message, busy_wait_s=wait or 0.0)
    return _Failure(message)


def _failure(exc: Exception, wire: Wire, model: str, answered: bool) -> _Failure:
    """What went wrong, in one line (order matters: httpx's timeouts are HTTPErrors too)."""
    if isinstance(exc, ProtocolError):
        return _Failure(f"{wire.label}, model '{model}': {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return _Failure(f"{wire.label} timed out ({type(exc).__name__}) on model '{model}'")
    if isinstance(exc, httpx.ConnectError):
        return _Failure(f"cannot reach {wire.label}: {one_line(str(exc)) or 'connect failed'}")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        # Nothing arrived (not `answered`): the server closed a pooled keep-alive
        # connection before it read the request. Safe to send again, once, on another.
        message = f"{wire.label}, model '{model}': stream ended early ({_describe(exc)})"
        return _Failure(message, no_byte=not answered)
    return _Failure(f"request to {wire.label} failed for model '{model}': {_describe(exc)}")


def _describe(exc: Exception) -> str:
    """`ReadError: detail`, or a plain reading where httpx gives no detail (a TCP reset)."""
    detail = one_line(str(exc))
    if detail:
        return f"{type(exc).__name__}: {detail}"
    if isinstance(exc, httpx.ReadError):
        return "ReadError: the connection was reset"
    return type(exc).__name__


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    out = bytearray()
    async for data in response.aiter_bytes():
        out += data[: limit - len(out)]
        if len(out) >= limit:
            break
    return bytes(out)


async def get_json(
    client: httpx.AsyncClient, wire: Wire, path: str, timeout_s: float
) -> dict[str, Any]:
    """GET a small JSON object for a status probe; ProtocolError with one line otherwise."""
    response = await client.get(path, headers=wire.headers(None), timeout=timeout_s)
    if response.status_code in (401, 403):
        raise ProtocolError(f"authentication failed (HTTP {response.status_code})")
    if response.status_code != 200:
        raise ProtocolError(
            f"HTTP {response.status_code} from {path}: {error_detail(response.content)}"
        )
    try:
        payload = json.loads(response.content)
    except (ValueError, RecursionError):
        raise ProtocolError(f"invalid JSON from {path}: {one_line(response.text, 80)!r}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"expected a JSON object from {path}")
    return payload


async def probe(wire: Wire, fetch: Callable[[], Awaitable[ServerStatus]]) -> ServerStatus:
    """Run a status probe; any failure becomes reachable=False with one line. Never raises
    (CancelledError still does)."""
    failure: str
    try:
        return await fetch()
    except httpx.ConnectError as exc:
        failure = f"cannot reach {wire.label}: {one_line(str(exc)) or 'connect failed'}"
    except ProtocolError as exc:
        failure = f"{wire.label}: {exc}"
    except Exception as exc:
        failure = f"{wire.label}: {type(exc).__name__}: {one_line(str(exc))}"
    return ServerStatus(reachable=False, error=wire.scrub(failure))
