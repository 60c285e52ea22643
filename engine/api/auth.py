"""The optional bearer token: every route but /healthz, compared in constant time.

A pure ASGI middleware (not a per-route dependency) so that no route, /metrics and the
OpenAPI page included, can be added without it. The token is only ever compared, never
logged or echoed; a query-string token is not accepted (it would land in access logs).
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz"})


def token_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` as its bearer credential."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if token_matches(Headers(scope=scope).get("authorization", ""), self._token):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "authorization: a valid bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
