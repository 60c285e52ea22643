"""The pooled HTTP client both real backends use, bound to one event loop."""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
import urllib.parse
from typing import Any

import httpx

_CONNECT_TIMEOUT_S = 10.0


def strip_credentials(url: str) -> str:
    """The URL without any `user:password@` (what is shown instead: `engine.redact`)."""
    split = urllib.parse.urlsplit(url)
    if "@" not in split.netloc:
        return url
    host = split.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((split.scheme, host, *split[2:]))


def url_secrets(url: str) -> list[str]:
    """What to scrub from messages for a URL with `user:password@` (or a bare `token@`): the
    password (else the token) as written and percent-decoded, and the Basic Authorization
    value httpx sends for it (servers echo headers back in errors)."""
    netloc = urllib.parse.urlsplit(url).netloc
    if "@" not in netloc:
        return []
    user, _, raw = netloc.rpartition("@")[0].partition(":")
    plain = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(raw)}"
    basic = base64.b64encode(plain.encode()).decode()
    secret = raw or user
    return [s for s in {secret, urllib.parse.unquote(secret), basic} if s]


def scrub(message: str, secrets: list[str]) -> str:
    """`message` with every secret replaced by ***."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def json_or_none(response: httpx.Response) -> Any:
    """The response's JSON, or None when the body is not JSON (a probe reads it as "no")."""
    try:
        return response.json()
    except ValueError:
        return None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context every HTTP client of the backends verifies servers with (the
    backends' pooled clients, the pool's transports, the slot probe, the live state).
    Building it loads the CA bundle (~50-80 ms): once per process is enough, and an
    SSLContext is safe to share across threads and event loops."""
    return httpx.create_ssl_context()


class LoopBoundClient:
    """One `httpx.AsyncClient`, created lazily in the loop that first uses it.

    Pooled connections belong to that loop; using them from another loop fails in
    obscure ways, so that raises RuntimeError instead.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None,
        owner: str,
    ) -> None:
        self._base_url = base_url
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._transport = transport
        self._owner = owner
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout,
                limits=self._limits,
                transport=self._transport,
                verify=tls_context(),
            )
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                f"{self._owner} was created in another event loop; make one backend per loop"
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is None:
            return
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError(f"{self._owner} must be closed in the event loop that used it")
        client, self._client, self._loop = self._client, None, None
        await client.aclose()
