"""The one protocol every backend speaks. The runner only ever sees this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Called with the number of output chunks (≈ tokens) streamed so far.
TokenProgress = Callable[[int], None]

# Appended to the agent name in the X-Quorum-Agent header of a prefix warm-up
# (engine/run/warmup.py): a warm-up is told apart from the consolidation itself (the
# simulated server keys its per-agent draws and faults on it), and the pool of several
# hosts sends both to one endpoint (its KV cache). Here, below both, so neither imports
# the other's layer.
WARMUP_SUFFIX = ".warmup"


class BackendError(Exception):
    """A call failed in a way the user should read (one line, no traceback, no secrets)."""


@dataclass
class ChatRequest:
    """One chat call. `agent` names the caller (sent as the `X-Quorum-Agent` header:
    harmless to real servers, used by the simulated server for per-agent faults)."""

    model: str
    system: str
    user: str
    agent: str
    schema: dict[str, Any] | None = None
    temperature: float = 0.2
    max_tokens: int | None = None
    stream: bool = True


@dataclass
class ChatResult:
    """What came back, with the server's own timing report where it gives one.

    Durations are seconds. `ttft_s` is measured by the client from sending the request
    to the first non-empty content chunk. `queue_s` is time the request waited for a
    server slot (Ollama: total − load − prompt_eval − eval); None where unknown.
    """

    content: str
    ttft_s: float | None = None
    total_s: float | None = None
    queue_s: float | None = None
    load_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    raw_final: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None  # "stop", or "length" when the token cap cut it
    cached_tokens: int | None = None  # prompt tokens reused from the server's prefix cache
    endpoint: str | None = None  # which endpoint answered (set by the pool of several hosts)


@dataclass
class ServerStatus:
    reachable: bool
    version: str | None = None
    models: list[str] = field(default_factory=list)
    error: str | None = None


class Backend(Protocol):
    """A chat backend bound to one event loop. Create it inside the loop that uses it
    and close it there (`aclose`); never share it across loops."""

    kind: str
    base_url: str
    simulated: bool

    async def chat(
        self, request: ChatRequest, on_tokens: TokenProgress | None = None
    ) -> ChatResult:
        """Run one chat call; raise BackendError with a readable message on failure."""
        ...

    async def status(self) -> ServerStatus:
        """Version and models, or reachable=False with the reason. Never raises."""
        ...

    async def open(self) -> None:
        """One-time set-up (HTTP client, TLS context), done before a fan-out so that
        the first request does not pay for it while the others wait."""
        ...

    async def aclose(self) -> None: ...
