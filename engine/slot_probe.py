"""Ask a server how many requests it runs at once (`--server-slots auto`).

- llama.cpp's server says so: `GET /props` → `total_slots` (its `--parallel`).
- Ollama does not expose `OLLAMA_NUM_PARALLEL` in its API, so Quorum assumes Ollama's
  default of 1 and says so; `--server-slots N` (or `quorum.toml`) tells it otherwise.
  An Ollama behind its OpenAI-compatible `/v1` is recognised by `GET /api/version`.
- Anything else (vLLM, hosted APIs) batches requests itself: no client-side limit.

Never raises: a probe that fails falls back to "unknown, no limit" and says why.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import httpx

from engine.slots import ServerSlots

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
OLLAMA_ASSUMED = (
    "assumed 1: Ollama's default OLLAMA_NUM_PARALLEL=1 (Ollama does not report it); "
    "if the server sets OLLAMA_NUM_PARALLEL=N, use --server-slots N"
)


def server_root(base_url: str) -> str:
    """`http://h:8080/v1` → `http://h:8080`: where llama.cpp serves `/props`."""
    split = urllib.parse.urlsplit(base_url)
    path = split.path.rstrip("/").removesuffix("/v1")
    # Credentials in the URL stay out of everything we log; httpx still sends them.
    return urllib.parse.urlunsplit((split.scheme, split.netloc, path, "", ""))


def slots_from_props(props: Any) -> int | None:
    """llama.cpp's `total_slots`, if the body has a sane one."""
    if not isinstance(props, dict):
        return None
    value = props.get("total_slots")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


async def probe_slots(
    kind: str,
    base_url: str,
    *,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ServerSlots:
    """How many slots the server at `base_url` has, for a backend of `kind`."""
    if kind == "ollama":
        return ServerSlots(1, OLLAMA_ASSUMED)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = server_root(base_url)
    try:
        async with httpx.AsyncClient(
            base_url=root, timeout=PROBE_TIMEOUT_S, transport=transport, headers=headers
        ) as client:
            props = await client.get("/props")
            if props.status_code == 200:
                total = slots_from_props(_json(props))
                if total is not None:
                    return ServerSlots(total, "reported by the server (llama.cpp /props)")
            version = await client.get("/api/version")
            if version.status_code == 200 and isinstance(_json(version), dict):
                return ServerSlots(1, OLLAMA_ASSUMED)
    except httpx.HTTPError as exc:
        log.info("slot probe failed: %s", type(exc).__name__)
        return ServerSlots(None, f"unknown (the server did not answer: {type(exc).__name__})")
    return ServerSlots(None, "unknown: the server does not report its slots; no client limit")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
