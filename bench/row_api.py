"""A1: concurrent HTTP API requests on one snapshot over 2 uvicorn workers sharing Redis.

Set-up, all real parts on loopback: a `redis-server`, one simulated LLM server (its chat
requests are counted), and `python -m engine serve --workers 2` (two uvicorn worker
processes, each with its own Engine, QUORUM_CACHE_URL on the same Redis) with the
Ollama backend pointed at the simulated server. The clients (httpx, in this process, on
the same two cores) open `requests` connections, wait on one gate, then all ask
`GET /api/insights` for the same scenario at once: exactly one fan-out must reach the
LLM server across both workers. Then `hits` requests one after another measure the
cache hit through the API (client-measured: HTTP, JSON and the Redis lookup).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bench.levels import Level
from bench.measure import Row, Target, check, percentile
from bench.plumbing import free_port, stop_process
from bench.redis_server import NOT_INSTALLED, LineReader, redis_in_scratch
from bench.sim import SNAPSHOT, running, sim_config

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
SCALE = 0.05  # the one analysis takes ≈ 1–2 s on the baseline profile (SIMULATED)
REQUEST_TIMEOUT_S = 120.0
START_TIMEOUT_S = 90.0
# (concurrent requests, sequential cache hits) by level
SIZES = {"full": (200, 300), "quick": (200, 100), "smoke": (10, 10)}


@contextmanager
def api_process(sim_url: str, redis_url: str, data_dir: Path) -> Iterator[str]:
    """`python -m engine serve --workers 2`; its base URL once both workers have started."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(QUORUM_CACHE_URL=redis_url, QUORUM_DATA_DIR=str(data_dir),
               QUORUM_CONFIG=str(data_dir / "no-quorum.toml"))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--workers", str(WORKERS), "--port", str(port),
         "--backend", "ollama", "--base-url", sim_url, "--server-slots", "6",
         "--scenario", SNAPSHOT, "-v"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        reader = LineReader(proc.stdout)
        for _ in range(WORKERS):  # uvicorn logs this once per worker process
            reader.wait_for("Application startup complete", START_TIMEOUT_S)
        url = f"http://127.0.0.1:{port}"
        httpx.get(f"{url}/healthz", timeout=30).raise_for_status()
        yield url
    finally:
        stop_process(proc, grace_s=30)


async def _burst(url: str, requests: int) -> tuple[list[float], list[str], list[bool]]:
    """`requests` identical GETs sent at once: latencies (ms), errors, cache hits."""
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as c:

        async def one() -> tuple[float, str | None, bool]:
            started = time.perf_counter()
            try:
                response = await c.get("/api/insights", params={"scenario": SNAPSHOT})
            except httpx.HTTPError as exc:
                return (time.perf_counter() - started) * 1000, type(exc).__name__, False
            took = (time.perf_counter() - started) * 1000
            if response.status_code != 200 or response.json()["status"] != "success":
                return took, f"HTTP {response.status_code}", False
            return took, None, bool(response.json()["cache"]["hit"])

        # All created before the loop runs any: they start in one turn of the loop.
        outcomes = await asyncio.gather(*(one() for _ in range(requests)))
    return ([t for t, _, _ in outcomes], [e for _, e, _ in outcomes if e],
            [h for _, e, h in outcomes if not e])  # fmt: skip


def _hits(url: str, count: int) -> tuple[list[float], int]:
    """Sequential cache hits through the API (ms), and how many were not hits."""
    times: list[float] = []
    misses = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/api/insights", params={"scenario": SNAPSHOT})
            times.append((time.perf_counter() - started) * 1000)
            misses += response.status_code != 200 or not response.json()["cache"]["hit"]
    return times, misses


def run(level: Level) -> Row:
    requests, hits = SIZES.get(level.name, SIZES["quick"])
    row = Row(
        "A1",
        f"{requests} concurrent API requests on one snapshot, {WORKERS} uvicorn workers "
        "sharing Redis",
        "exactly 1 fan-out for all requests; 0 errors; cache hit through the API < 50 ms",
        {"requests": requests, "workers": WORKERS, "profile": "baseline", "time_scale": SCALE,
         "sequential_hits": hits, "clients": "httpx.AsyncClient, one connection per request",
         "state": "redis-server on loopback, QUORUM_CACHE_URL in both workers"},
    )  # fmt: skip
    with ExitStack() as stack:
        scratch_redis = redis_in_scratch(stack, "quorum-a1-")
        if scratch_redis is None:
            row.not_measured = NOT_INSTALLED
            return row
        tmp, redis = scratch_redis
        server = stack.enter_context(running(sim_config(scale=SCALE)))
        url = stack.enter_context(api_process(server.url, redis.url, tmp))
        server.stats.reset()
        started = time.perf_counter()
        latencies, errors, hit_flags = asyncio.run(_burst(url, requests))
        burst_s = time.perf_counter() - started
        answers = server.stats.snapshot().answers_by_agent()
        hit_ms, misses = _hits(url, hits)
    fan_outs = max(answers.values(), default=0)  # each agent answers once per fan-out
    row.checks += [
        check("fan-outs at the LLM server (most answers by one agent)", [float(fan_outs)], "",
              Target("==", 1)),
        check("errors", [float(len(errors))], f"of {requests}", Target("==", 0)),
        check("cache hit through the API: p50", [percentile(hit_ms, 50)], "ms",
              Target("<=", 50)),
        check("cache hit through the API: p99", [percentile(hit_ms, 99)], "ms", binding=False),
        check("burst latency: p95", [percentile(latencies, 95)], "ms", binding=False,
              note="includes the one analysis (SIMULATED, time scale 0.05)"),
        check("burst latency: p50", [percentile(latencies, 50)], "ms", binding=False),
        check("burst wall", [burst_s], "s", binding=False),
    ]  # fmt: skip
    row.details = {
        "errors": errors[:10],
        "answers_by_agent": answers,
        "fresh_answers_in_burst": sum(not h for h in hit_flags),
        "hit_misses_after_burst": misses,
        "burst_ms_max": round(max(latencies), 1) if latencies else None,
    }
    return row
