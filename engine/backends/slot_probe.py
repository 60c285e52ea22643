"""Find out how many requests a server runs at once (`--server-slots auto`).

- llama.cpp's server says so: `GET /props` → `total_slots` (its `--parallel`). Asked first.
- Ollama does not expose `OLLAMA_NUM_PARALLEL` in its API, and since its "concurrency by
  default" change (ollama/ollama PR #4218) it picks 4 where the model fits in memory and
  1 where it does not. So its slots are *learned*: before the first fan-out to an
  endpoint and model, `learn_slots` sends a few concurrent one-token requests and judges
  them by the server's own report (Ollama's final chunk: a request that waited for a
  slot has `total_duration` well above load + prompt_eval + eval). The engine remembers
  the answer per endpoint and model (`engine/store/state.py`) and learns again when it is old
  or a run contradicts it (`contradicted`). An Ollama behind its OpenAI-compatible `/v1`
  is recognised by `GET /api/version` and probed on its native API.
- Anything else (vLLM, hosted APIs) batches requests itself: no client-side limit.

`probe_slots` never raises: a probe that fails falls back to "unknown, no limit" and
says why. `--server-slots N` and `[server] slots` win over all of this.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, cast

import httpx

from engine.backends.base import BackendError, ChatRequest, ChatResult
from engine.backends.http import json_or_none, tls_context
from engine.backends.ollama import OllamaBackend
from engine.backends.server_slots import ServerSlots
from engine.records import AgentRun

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
OLLAMA_LEARNS = (
    "assumed 1 until learned: Ollama does not report OLLAMA_NUM_PARALLEL; "
    "a probe learns it before the first run (or set --server-slots N)"
)
# The probe: first PROBE_FIRST requests at once (a one-slot server shows itself with the
# cost of two tiny requests), then, if neither waited, PROBE_WIDE at once: one per agent.
# A server with more slots than that is learned as "at least" that many.
PROBE_FIRST = 2
PROBE_WIDE = 5
PROBE_USER = "Reply with one word: ready."
PROBE_AGENT = "SlotProbe"  # X-Quorum-Agent: SlotProbe<i>.probe
PROBE_ROLE = "slot-probe"
# A request waited for a slot when the server's queue share of it exceeds this fraction
# of the probes' median work (one request's work is what a queued one waits).
QUEUED_SHARE = 0.5
# The wide wave's requests must overlap at the server: each works OVERLAP_FACTOR × the
# client's own overhead per request (a few ms), at most PROBE_MAX_TOKENS tokens.
OVERLAP_FACTOR = 2.0
PROBE_MAX_TOKENS = 32
LEARNED_TTL_S = 6 * 3600.0  # then learn again: the server may have been restarted
Clock = Callable[[], float]


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
    base_url: str,
    *,
    learns: bool = False,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ServerSlots:
    """How many slots the server at `base_url` has. `learns`: the backend's kind is an
    Ollama (engine/backends/registry.py), whose slots are learned even while it does not
    answer or say what it is."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = server_root(base_url)
    try:
        async with httpx.AsyncClient(
            base_url=root,
            timeout=PROBE_TIMEOUT_S,
            transport=transport,
            headers=headers,
            verify=tls_context(),
        ) as client:
            props = await client.get("/props")
            if props.status_code == 200:
                total = slots_from_props(json_or_none(props))
                if total is not None:
                    return ServerSlots(total, "reported by the server (llama.cpp /props)")
            version = await client.get("/api/version")
            body = json_or_none(version)
            if version.status_code == 200 and isinstance(body, dict):
                return ServerSlots(1, OLLAMA_LEARNS, learn=True, server=_version(body))
    except httpx.HTTPError as exc:
        log.info("slot probe failed: %s", type(exc).__name__)
        if learns:  # not up yet: the run's own probe will find out
            return ServerSlots(1, OLLAMA_LEARNS, learn=True)
        return ServerSlots(None, f"unknown (the server did not answer: {type(exc).__name__})")
    if learns:
        return ServerSlots(1, OLLAMA_LEARNS, learn=True)
    return ServerSlots(None, "unknown: the server does not report its slots; no client limit")


def _version(body: dict[str, Any]) -> str:
    version = body.get("version")
    return f"ollama {version}" if isinstance(version, str) else "ollama"


# --- learning an Ollama server's slots ------------------------------------------------


@dataclass(frozen=True)
class LearnedSlots:
    """What was learned about one endpoint and model, and how: `probe` (concurrent
    one-token requests) or `run` (a run's own timings contradicted what we believed)."""

    slots: int
    how: Literal["probe", "run"]
    learned_at: float  # unix seconds
    at_least: bool = False  # every probe ran at once: the server may have more
    server: str = ""  # e.g. "ollama 0.6.0": learn again when it changes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedSlots:
        how = data.get("how")
        slots = data.get("slots")
        if how not in ("probe", "run") or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"learned slots: unreadable record {data!r}")
        return cls(
            slots, how, float(data.get("learned_at", 0.0)), bool(data.get("at_least")),
            str(data.get("server", "")),
        )  # fmt: skip

    def source(self, now: float | None = None) -> str:
        """`learned: 4 (probe at 14:02, 3 min ago)`: the number, how and when."""
        now = time.time() if now is None else now
        at = datetime.fromtimestamp(self.learned_at).strftime("%H:%M")
        age_min = max(0, round((now - self.learned_at) / 60))
        age = "just now" if age_min == 0 else f"{age_min} min ago"
        count = f"≥ {self.slots}" if self.at_least else str(self.slots)
        how = "probe" if self.how == "probe" else "the timings of a run"
        return f"learned: {count} ({how} at {at}, {age})"

    def server_slots(self, now: float | None = None) -> ServerSlots:
        return ServerSlots(self.slots, self.source(now), server=self.server, learned=True)


@dataclass(frozen=True)
class Judgement:
    """What one wave of concurrent probe requests showed: the most that worked at the
    same moment (the server's prefill and decode intervals, laid on its own clock), and
    whether any waited for a slot. If one waited, every slot was busy then: `running`
    is the server's slots exactly; if none waited, only a lower bound."""

    running: int
    queued: bool


def free_slots(
    results: Sequence[ChatResult], ends: Sequence[float] | None = None
) -> Judgement | None:
    """Judge `results`, sent at the same moment, by the server's own report; None when
    one lacks the server's timings. `ends`: when each arrived (the client's clock), used
    where the server does not stamp its answer (`created_at`)."""
    queues = [r.queue_s for r in results]
    works = [(r.prefill_s or 0.0) + (r.decode_s or 0.0) for r in results]
    if not results or any(q is None for q in queues) or not any(works):
        return None
    threshold = QUEUED_SHARE * statistics.median(works)
    stamps = [_stamp(r.raw_final) for r in results]
    finish = stamps if all(t is not None for t in stamps) else list(ends or [])
    if len(finish) != len(results):
        finish = [0.0] * len(results)  # no clock at all: assume they ended together
    intervals = [(f - w, f) for f, w in zip(cast(list[float], finish), works, strict=True)]
    queued = any(q is not None and q > threshold for q in queues)
    return Judgement(max(1, most_at_once(intervals)), queued)


def most_at_once(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an interval ending as another starts does
    not overlap it)."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def _stamp(final: dict[str, Any]) -> float | None:
    """Ollama's `created_at` (RFC 3339, up to nanoseconds) as unix seconds."""
    text = final.get("created_at")
    if not isinstance(text, str):
        return None
    whole, _, rest = text.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        moment = datetime.fromisoformat(whole + (f".{fraction}" if fraction else "") + "+00:00")
    except ValueError:
        return None
    return moment.timestamp()


async def learn_slots(
    url: str,
    model: str,
    clock: Clock,
    *,
    timeout_s: float = 60.0,
    server: str = "",
    backend: OllamaBackend | None = None,
) -> tuple[LearnedSlots | None, list[AgentRun]]:
    """Probe the Ollama server at `url` (its native API) for `model`: what was learned
    (None: the server gave no timings or failed) and one AgentRun per probe request, on
    `clock`'s time axis, for the waterfall. `backend`: an open one to use (not closed)."""
    own = backend is None
    if backend is None:
        backend = OllamaBackend(server_root(url), timeout_s=timeout_s, max_connections=PROBE_WIDE)
    runs: list[AgentRun] = []
    try:
        if own:
            await backend.open()
        learned: int | None = None
        waves = [(PROBE_FIRST, 1), (PROBE_WIDE, 0), (PROBE_WIDE, -1)]  # 0: fit the overlap
        tokens = 1
        for count, wanted in waves:
            tokens = tokens if wanted == 0 else (2 * tokens if wanted < 0 else wanted)
            first = len(runs)
            results = await asyncio.gather(
                *(
                    _probe_once(backend, model, first + i + 1, clock, runs, tokens)
                    for i in range(count)
                )
            )
            answered = [r for r in results if r is not None]
            wave = runs[first:]
            judged = (
                free_slots(answered, [r.end_s for r in wave]) if len(answered) == count else None
            )
            if judged is None:
                learned = None
                break
            learned = judged.running
            if judged.queued or (judged.running >= count and count == PROBE_WIDE):
                break  # exact, or every probe ran at once: at least that many
            if count == PROBE_FIRST:
                tokens = overlap_tokens(answered, wave)
    finally:
        if own:
            await backend.aclose()
    if learned is None:
        return None, runs
    at_least = learned >= PROBE_WIDE
    return LearnedSlots(learned, "probe", time.time(), at_least, server), runs


def overlap_tokens(results: Sequence[ChatResult], runs: Sequence[AgentRun]) -> int:
    """Tokens each request of the wide wave writes so that all of them reach the server
    before the first one finishes: the requests arrive spread over about the client's
    own overhead (its wall time less the server's), so each must work a few times that.
    One token where the server is slow next to the client (any real model)."""
    overheads = [run.duration_s - (r.total_s or 0.0) for r, run in zip(results, runs, strict=False)]
    overhead = statistics.median(overheads) if overheads else 0.0
    per_token = max(
        ((r.decode_s or 0.0) / r.output_tokens for r in results if r.output_tokens), default=0.0
    )
    if per_token <= 0:
        return 1
    return max(1, min(PROBE_MAX_TOKENS, math.ceil(OVERLAP_FACTOR * overhead / per_token)))


async def _probe_once(
    backend: OllamaBackend,
    model: str,
    index: int,
    clock: Clock,
    runs: list[AgentRun],
    tokens: int = 1,
) -> ChatResult | None:
    name = f"{PROBE_AGENT}{index}.probe"
    run = AgentRun(name=name, role=PROBE_ROLE, model=model, start_s=clock(), client_queue_s=0.0)
    runs.append(run)
    request = ChatRequest(
        model=model, system="", user=PROBE_USER, agent=name, max_tokens=tokens, stream=False
    )
    result: ChatResult | None = None
    try:
        result = await backend.chat(request)
        run.ttft_s, run.queue_s, run.load_s = result.ttft_s, result.queue_s, result.load_s
        run.prefill_s, run.decode_s = result.prefill_s, result.decode_s
        run.prompt_tokens, run.output_tokens = result.prompt_tokens, result.output_tokens
        run.cached_tokens, run.response_chars = result.cached_tokens, len(result.content)
    except BackendError as exc:
        run.status, run.error = "error", str(exc)
    run.end_s = clock()
    run.duration_s = run.end_s - run.start_s
    return result


def contradicted(believed: int, runs: Sequence[AgentRun], server: str = "") -> LearnedSlots | None:
    """A run sent at most `believed` requests at once; if the server still made some of
    the first ones wait (its own queue report), it has fewer slots: how many it ran at
    once. None when the run agrees (or the server reports no queue)."""
    first = [r for r in runs if (r.client_queue_s or 0.0) <= 1e-3 and r.queue_s is not None]
    works = [(r.prefill_s or 0.0) + (r.decode_s or 0.0) for r in first]
    if len(first) < 2 or not any(works):
        return None
    threshold = QUEUED_SHARE * statistics.median(works)
    free = max(1, sum(1 for r in first if (r.queue_s or 0.0) <= threshold))
    if free >= min(believed, len(first)):
        return None
    return LearnedSlots(free, "run", time.time(), server=server)
