"""The shell both real HTTP backends are: one protocol (a `Wire`) on one loop-bound client.

`OllamaBackend` and `OpenAICompatBackend` differ only in their wire (path, body, decoder,
wording), in how their URL is shown and sent, and in what their status probe reads; the
rest — the pooled client, `open`/`aclose`, `chat` through the streaming skeleton, a status
probe that never raises — is this class, written once.
"""

from __future__ import annotations

import httpx

from engine.backends.base import ChatRequest, ChatResult, ServerStatus, TokenProgress
from engine.backends.http import LoopBoundClient
from engine.backends.streaming import (
    DEFAULT_CAPS,
    DEFAULT_RETRY,
    AnswerCaps,
    RetryPolicy,
    Wire,
    probe,
    stream_chat,
)

STATUS_TIMEOUT_S = 2.0  # a status probe's GETs: the dashboard waits for them


class HttpBackend:
    """One server over HTTP; bound to the event loop of its first call. A subclass gives
    its wire and `fetch_status` (what its server says about itself)."""

    def __init__(
        self,
        *,
        kind: str,
        shown_url: str,
        client_url: str,
        wire: Wire,
        simulated: bool,
        timeout_s: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None,
        caps: AnswerCaps = DEFAULT_CAPS,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.kind = kind
        # Shown, cached and logged: without any user:password the URL may carry.
        self.base_url = shown_url
        self.simulated = simulated
        self._wire = wire
        self._caps = caps
        self._retry = retry
        self._http = LoopBoundClient(
            client_url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            transport=transport,
            owner=f"{type(self).__name__}({shown_url!r})",
        )

    async def open(self) -> None:
        self._http.get()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(
        self, request: ChatRequest, on_tokens: TokenProgress | None = None
    ) -> ChatResult:
        return await stream_chat(
            self._http.get(), self._wire, request, on_tokens, caps=self._caps, retry=self._retry
        )

    async def status(self) -> ServerStatus:
        client = self._http.get()
        return await probe(self._wire, lambda: self.fetch_status(client))

    async def fetch_status(self, client: httpx.AsyncClient) -> ServerStatus:
        """Version and models as the server reports them; may raise (`status` catches)."""
        raise NotImplementedError
