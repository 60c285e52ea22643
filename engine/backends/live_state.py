"""What a server says about itself right now, where it says anything (the Settings page).

- llama.cpp's server: `GET /slots` (one object per slot, `is_processing` while it works);
  with `--metrics`, `GET /metrics` (`llamacpp:requests_processing`, `…_deferred`).
- vLLM: `GET /metrics` (`vllm:num_requests_running`, `vllm:num_requests_waiting`, prefix
  cache hits and queries).
- Ollama says nothing of the kind: `None`.

Parsing is pure (any text in, a line or None out); `live_state` never raises.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from engine.backends.http import json_or_none, tls_context
from engine.backends.slot_probe import server_root

TIMEOUT_S = 2.0
_METRICS = {
    "running": ("vllm:num_requests_running", "llamacpp:requests_processing"),
    "waiting": ("vllm:num_requests_waiting", "llamacpp:requests_deferred"),
    "hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
}


def from_slots(body: Any) -> str | None:
    """llama.cpp's `/slots`: how many of its slots are working."""
    if not isinstance(body, list) or not body or not all(isinstance(s, dict) for s in body):
        return None
    busy = sum(1 for s in body if s.get("is_processing") is True)
    return f"{busy} of {len(body)} slots busy (llama.cpp /slots)"


def metric_values(text: str) -> dict[str, float]:
    """`name{labels} value` lines of Prometheus' text format, summed over labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        name = parts[0].split("{", 1)[0]
        try:
            value = float(parts[1])
        except ValueError:
            continue
        if math.isfinite(value):
            out[name] = out.get(name, 0.0) + value
    return out


def from_metrics(text: str) -> str | None:
    """Running and waiting requests (and prefix-cache hits where counted) from `/metrics`."""
    values = metric_values(text)

    def first(kind: str) -> float | None:
        return next((values[n] for n in _METRICS[kind] if n in values), None)

    running, waiting = first("running"), first("waiting")
    if running is None and waiting is None:
        return None
    line = f"running {running or 0:g}, waiting {waiting or 0:g}"
    hits, queries = first("hits"), first("queries")
    if hits is not None and queries:
        line += f", prefix-cache hits {hits / queries:.0%}"
    return line + " (/metrics)"


async def live_state(base_url: str, api_key: str | None = None) -> str | None:
    """The server's live state in one line, or None where it reports none (or is down)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = server_root(base_url)
    try:
        async with httpx.AsyncClient(
            timeout=TIMEOUT_S, headers=headers, verify=tls_context()
        ) as client:
            slots = await client.get(f"{root}/slots")
            if slots.status_code == 200:
                found = from_slots(json_or_none(slots))
                if found is not None:
                    return found
            for url in (f"{root}/metrics", f"{base_url.rstrip('/')}/metrics"):
                metrics = await client.get(url)
                if metrics.status_code == 200:
                    found = from_metrics(metrics.text)
                    if found is not None:
                        return found
    except httpx.HTTPError:
        return None
    return None
