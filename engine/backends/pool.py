"""One Backend over several LLM endpoints (hosts), so the runner never knows there are many.

- **Spread by free slots.** Each endpoint has its own slots (its `ServerSlots`); the pool's
  total is their sum (the runner's scheduler sends at most that many requests at once).
  Each request goes to the live endpoint with the most free slots (ties: the one with
  fewer requests in flight, then the order they were listed in). If every live endpoint
  is full — possible once one has been skipped — the request waits here for a free slot
  instead of queueing unseen on a server.
- **Skip a failing endpoint.** An endpoint that refuses connections, drops them mid-answer
  or answers HTTP 5xx is skipped for the rest of the run (the pool lives for one run), and
  the request is sent again to another endpoint — inside the same `chat()` call, so within
  the agent's own timeout (the runner wraps `chat()` in `asyncio.timeout`). An error that
  is about the answer (a 4xx, a stream that is not JSON) is not the endpoint's fault: it is
  raised as is. When every endpoint has been skipped, a request still tries each of them
  once: one agent's failure (e.g. a 500 on its prompt) must not lose the others.
- **Say who served.** `ChatResult.endpoint` names the endpoint that answered.

How a failure is told apart from a bad answer: each endpoint's HTTP client gets a
`WatchedTransport`, which notes transport errors and 5xx responses for the call that saw
them (a context variable: httpx runs a request in its caller's task). The backends
themselves (ollama.py, openai_compat.py) stay unaware of the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

import httpx

from engine.backends.base import (
    WARMUP_SUFFIX,
    Backend,
    BackendError,
    ChatRequest,
    ChatResult,
    ServerStatus,
    TokenProgress,
)
from engine.backends.http import tls_context
from engine.redact import redact_url

log = logging.getLogger(__name__)

# Transport errors that mean "this endpoint is not serving": refused, reset, dropped
# mid-answer, or no connection within the connect timeout. A read timeout is not one
# (a slow answer is the agent's timeout's business).
_ENDPOINT_FAILURES = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


@dataclass
class _CallFailures:
    """Endpoint-level failures one `chat()` attempt saw (filled by WatchedTransport)."""

    reasons: list[str] = field(default_factory=list)


_current_call: contextvars.ContextVar[_CallFailures | None] = contextvars.ContextVar(
    "quorum_pool_call", default=None
)


def _note(reason: str) -> None:
    call = _current_call.get()
    if call is not None:
        call.reasons.append(reason)


class _WatchedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except _ENDPOINT_FAILURES as exc:
            _note(f"connection lost mid-answer ({type(exc).__name__})")
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


class WatchedTransport(httpx.AsyncBaseTransport):
    """Passes requests through; notes endpoint failures for the current pool call."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except _ENDPOINT_FAILURES as exc:
            _note(f"{type(exc).__name__}")
            raise
        if response.status_code >= 500:
            _note(f"HTTP {response.status_code}")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_WatchedStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def watched_transport(max_connections: int) -> WatchedTransport:
    """An HTTP transport sized like the backends' own pool (a client given a transport
    ignores its own `limits` and `verify`, so they are set here)."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return WatchedTransport(httpx.AsyncHTTPTransport(limits=limits, verify=tls_context()))


@dataclass
class PoolMember:
    """One endpoint of the pool and what the pool knows about it during this run."""

    backend: Backend
    slots: int | None = None  # None: no known limit
    model: str | None = None  # its name for the run's default model (None: the same)
    in_flight: int = 0
    served: int = 0
    skipped: str | None = None  # why it is skipped for the rest of the run

    @property
    def name(self) -> str:
        return redact_url(self.backend.base_url)

    def free(self) -> float:
        return float("inf") if self.slots is None else self.slots - self.in_flight


def pick(members: Sequence[PoolMember], tried: set[int], prefer: int | None = None) -> int | None:
    """Index of the member to send to: a live, untried one with a free slot (`prefer`
    first, e.g. the one holding this agent's prefix cache, else the most free slots);
    None when none has room. Pure: the caller decides whether to wait."""
    live = [
        i for i, m in enumerate(members) if i not in tried and m.skipped is None and m.free() > 0
    ]
    if not live:
        return None
    if prefer is not None and prefer in live:
        return prefer
    return max(live, key=lambda i: (members[i].free(), -members[i].in_flight, -i))


class PoolBackend:
    """A Backend over several endpoint backends (see the module docstring)."""

    def __init__(self, members: Sequence[PoolMember], *, default_model: str | None = None) -> None:
        if not members:
            raise ValueError("endpoints: a pool needs at least one endpoint")
        self.members = list(members)
        kinds = sorted({m.backend.kind for m in self.members})
        self.kind = kinds[0] if len(kinds) == 1 else "+".join(kinds)
        self.base_url = ", ".join(m.name for m in self.members)
        # Labelled simulated if any answer may come from the simulator: never pass it off as real.
        self.simulated = any(m.backend.simulated for m in self.members)
        self._default_model = default_model
        self._waiters: list[asyncio.Future[None]] = []  # requests waiting for a free slot
        self._affinity: dict[str, int] = {}  # agent → the member that last served it

    async def open(self) -> None:
        await asyncio.gather(*(m.backend.open() for m in self.members))

    async def aclose(self) -> None:
        await asyncio.gather(*(m.backend.aclose() for m in self.members))

    async def chat(
        self, request: ChatRequest, on_tokens: TokenProgress | None = None
    ) -> ChatResult:
        tried: set[int] = set()
        last_error: BackendError | None = None
        # Progress counts on across attempts: a retry that restarted from one token would
        # look, to the straggler check, like an agent that slowed down to a crawl.
        earlier = 0
        latest = 0

        def progress(count: int) -> None:
            nonlocal latest
            latest = count
            if on_tokens is not None:
                on_tokens(earlier + count)

        # The Consolidator's warm-ups and its final call go to one endpoint: its KV cache.
        agent = request.agent.removesuffix(WARMUP_SUFFIX)
        while True:
            index = await self._take(tried, self._affinity.get(agent))
            if index is None:
                raise last_error or BackendError("no LLM endpoint left to try")
            tried.add(index)
            member = self.members[index]
            failures = _CallFailures()
            token = _current_call.set(failures)
            try:
                result = await member.backend.chat(self._for(member, request), progress)
            except BackendError as exc:
                if not failures.reasons:
                    raise  # about this answer, not the endpoint: another would not help
                self._skip(member, failures.reasons[0], request.agent)
                last_error = exc
                earlier, latest = earlier + latest, 0
                continue
            finally:
                _current_call.reset(token)
                self._release(member)
            member.served += 1
            self._affinity[agent] = index
            result.endpoint = member.name
            return result

    async def _take(self, tried: set[int], prefer: int | None) -> int | None:
        """Reserve a slot on the best member; wait while every live untried one is full.
        When none is live and untried any more, fall back to skipped untried ones.
        (No lock: nothing here awaits between choosing a member and counting it.)"""
        while True:
            index = pick(self.members, tried, prefer)
            if index is not None:
                break
            untried = [i for i in range(len(self.members)) if i not in tried]
            if any(self.members[i].skipped is None for i in untried):
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                continue
            if not untried:
                return None
            index = untried[0]  # every endpoint was skipped: still try each once
            break
        self.members[index].in_flight += 1
        return index

    def _release(self, member: PoolMember) -> None:
        # Synchronous, so a cancelled call always gives its slot back.
        member.in_flight -= 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _skip(self, member: PoolMember, reason: str, agent: str) -> None:
        if member.skipped is None:
            member.skipped = reason
            log.warning(
                "endpoint %s skipped for the rest of the run (%s); %s retried elsewhere",
                member.name,
                reason,
                agent,
            )
        else:  # one warning per endpoint; each further agent it cut off, at -v
            log.info("%s retried elsewhere: endpoint %s failed (%s)", agent, member.name, reason)

    def _for(self, member: PoolMember, request: ChatRequest) -> ChatRequest:
        # Servers name one model differently (Ollama `llama3.1:8b`, vLLM a HF repo id).
        if member.model and request.model == self._default_model:
            return replace(request, model=member.model)
        return request

    async def status(self) -> ServerStatus:
        """Reachable if any endpoint is; the others are named in `error`."""
        statuses = await asyncio.gather(*(m.backend.status() for m in self.members))
        return combine_statuses([m.name for m in self.members], list(statuses))


def combine_statuses(names: Sequence[str], statuses: Sequence[ServerStatus]) -> ServerStatus:
    up = [s for s in statuses if s.reachable]
    down = [f"{n}: {s.error or 'unreachable'}" for n, s in zip(names, statuses, strict=True)
            if not s.reachable]  # fmt: skip
    versions = sorted({s.version for s in up if s.version})
    models = sorted({model for s in up for model in s.models})
    return ServerStatus(
        reachable=bool(up),
        version=", ".join(versions) or None,
        models=models,
        error="; ".join(down) or None,
    )
