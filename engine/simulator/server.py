"""A simulated Ollama server: the product's embedded default backend.

Like Grafana's TestData source, it lets Quorum run with no model installed. It is a real
HTTP/1.1 server on loopback speaking enough of Ollama's API (`/api/chat` and
`/api/generate`, streaming and not, `/api/version`, `/api/tags`, `/api/ps`) that Ollama
clients work unchanged. Both completion endpoints share one timing model and one answer:
`/api/generate`'s `prompt` is read like `/api/chat`'s last user message, and its optional
`system` counts towards the prompt tokens like a system message. Answers come from the
USE-method rules (`engine.run.use_method`), so they are schema-valid and true to the
snapshot. Every response says it is simulated (version suffix, model family).

Timing follows Ollama: a model load on first use (kept for `keep_alive_s`, concurrent
first calls share it), `num_parallel` slots with a FIFO queue in front of them (the wait
is inside `total_duration` but outside load/prefill/decode, so a client can compute
queue = total − load − prompt_eval − eval), prefill over the prompt and decode streamed
token by token. Every duration, keep-alive included, is multiplied by `time_scale`.

Slots, as Ollama picks them: `num_parallel` if given (OLLAMA_NUM_PARALLEL), else 4 where
the model fits in memory (`fits_in_memory`, the default) and 1 where it does not, as
Ollama does since its "concurrency by default" change (ollama/ollama PR #4218). Like
Ollama, it reports nothing about its slots: a client has to be told or find out
(engine/backends/slot_probe.py). In llama.cpp mode (`llama_props`) it answers `GET /props` with
`total_slots`, `GET /slots` and `GET /health` as llama.cpp's server does.

Prefix caching, as Ollama's and llama.cpp's servers do: each slot keeps the KV of the
last prompt it read; the request at the head of the queue goes to the free slot whose
cached prompt shares the longest prefix with its own (least recently used among
equals); only the rest is prefilled. `prompt_eval_count` counts the evaluated tokens
only (as Ollama's does), and the final report adds `prompt_cache_count`, the reused
ones (an extension: Ollama does not report it; llama.cpp reports `timings.cache_n`). At
least one token is always evaluated. `prefix_cache=False` turns it off (a server that
re-reads every prompt, as for prompts that share no prefix).

Token counting: the simulator has no tokenizer; `estimate_tokens` counts 4 characters a
token, for prompts, cached prefixes (whole tokens within the common characters) and
answers alike.

Profiles (seconds at time_scale 1, warm model, cold slots; the full consolidation's
prompt is ≈ 1500 tokens on `cpu-saturation`, a specialist's ≈ 300):

- `baseline` reproduces the team's measurement, 6 sequential calls ≈ 70 s (≈ 11.7 s a
  call) with an 8B Q4 model on CPU: llama.cpp typically prefills ≈ 250 tok/s and decodes
  ≈ 12 tok/s there. 120 output tokens make a specialist ≈ 1 + 10 = 11 s and the full
  consolidation ≈ 6 + 10 = 16 s (5 × 11 + 16 ≈ 71 s). The first load reads ≈ 5 GB: 3 s.
- `gpu`: the same model fully offloaded to a mid-range GPU (≈ 2500 tok/s prefill,
  ≈ 65 tok/s decode): ≈ 2 s a specialist, ≈ 2.5 s the consolidator; 2 s load.
- `cpu-small`: a 3B model on the same CPU (≈ 600 / 24 tok/s): ≈ 5.4 s a specialist,
  ≈ 7.5 s the consolidator, ≈ 6 s on average; 1.5 s load.
- `fast-consolidator`: `baseline`, but the consolidator writes at most 24 tokens.
- `ci-smollm2`: the CI's llama.cpp server with SmolLM2-135M on 2 threads, its rates as
  measured here (`python -m bench.calibrate`).

Slots share compute: each profile has a throughput curve (engine/throughput.py), the
per-stream prefill and decode speed by how many sequences are in a slot, re-read as they
start and end. Single-stream speed is the profile's rate. CPU profiles use the curve
measured here on llama.cpp's server (bench/calibration/llama_cpu.json), `gpu` llama.cpp's
published batched-bench numbers; each curve names its source.

Decode follows the answer actually written: its tokens by `estimate_tokens`, but at most
the profile's length for that kind of answer (the calibrated length of what the measured
model wrote: the rule-based text is denser than a model's prose, so a longer text is
spread over that many tokens), ± the profile's jitter. A specialist's answer is therefore
≈ 120 tokens, while the compact consolidation verdict (≈ 25 tokens) takes ≈ 2 s.

Simplifications: every model runs at the profile's speed; a hung request holds a slot
and counts as running. `/api/generate` omits the `context`
token array (no client here continues from one). A client that disconnects ends its
request (checked before every wait), queued, prefilling or decoding, streamed or not.

Faults, per `X-Quorum-Agent` header: `hang`, `error` (500), `error-midstream` (an
`{"error"}` line after a few tokens), `malformed` (prose, not JSON), `slow` (3× prefill
and decode), `busy` (503) and `notfound` (404).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import random
import re
import select
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from engine.run import agents, use_method
from engine.run.agents import AgentSpec
from engine.run.pacing import ServerModel
from engine.throughput import (
    CI_SMOLLM2_RATES,
    CPU_CURVE,
    FLAT_CURVE,
    GPU_CURVE,
    SMOLLM2_CHARS_PER_TOKEN,
    Job,
    ThroughputCurve,
)

VERSION = "0.6.0-simulated"
# The final report's count of prompt tokens reused from the slot's KV cache. Ollama
# reports only the evaluated ones (prompt_eval_count); this extension lets a client show
# the split. Real Ollama omits it; llama.cpp's server reports it as `timings.cache_n`.
CACHED_COUNT_FIELD = "prompt_cache_count"
DEFAULT_MODELS: tuple[str, ...] = ("llama3.1:8b", "mistral:7b", "qwen2.5:3b", "llama3.1:70b")
FAULT_KINDS: tuple[str, ...] = (
    "hang", "error", "error-midstream", "malformed", "slow", "busy", "notfound",
)  # fmt: skip

LLAMA_CTX_PER_SLOT = 4096  # what llama_props mode reports as each slot's n_ctx
_CURVE_STEP_S = 0.02  # how often a stream re-reads its speed while others start and end
_POLL_S = 0.05  # how often long waits look for a stop or a vanished client
_WARM_LOAD_S = (0.001, 0.005)  # what Ollama reports for a model that is already loaded
_SLOW_FACTOR = 3.0
_MIDSTREAM_TOKENS = 3
_MAX_BODY = 32 * 1024 * 1024
_MALFORMED = (
    "Sure! Here is my analysis: the host looks fairly busy overall, and it would probably "
    "help to add some capacity and keep an eye on the dashboards. Let me know if you want me "
    "to go deeper into any particular resource or explain the USE method in more detail!"
)
_GENERIC = {
    "summary": "Simulated Ollama: this is not a Quorum analysis prompt, so there is nothing "
    "to analyse.",
    "findings": [],
}


@dataclass(frozen=True)
class SimProfile:
    name: str
    load_s: float
    prefill_tps: float
    decode_tps: float
    agent_output_tokens: int
    consolidator_output_tokens: int
    generalist_output_tokens: int
    jitter: float  # ± fraction of the output tokens, drawn per request
    description: str
    curve: ThroughputCurve = FLAT_CURVE  # how its slots share compute
    # Characters a prompt token: 4 by rule of thumb; a profile of a measured model may
    # carry its tokenizer's (ci-smollm2: SmolLM2's on Quorum's prompts, llama.cpp /tokenize).
    prompt_chars_per_token: float = 4.0

    def output_tokens(self, kind: str) -> int:
        if kind == "consolidator":
            return self.consolidator_output_tokens
        return self.generalist_output_tokens if kind == "generalist" else self.agent_output_tokens

    def call_s(self, kind: str, prompt_tokens: int) -> float:
        """Expected seconds for one warm, unqueued call at time_scale 1, without jitter."""
        return prompt_tokens / self.prefill_tps + self.output_tokens(kind) / self.decode_tps


PROFILES: dict[str, SimProfile] = {
    p.name: p
    for p in (
        SimProfile("baseline", 3.0, 250, 12, 120, 120, 200, 0.15,
                   "8B model on CPU: ≈ 11 s a specialist, ≈ 16 s a full consolidation",
                   CPU_CURVE),
        SimProfile("gpu", 2.0, 2500, 65, 120, 120, 200, 0.10,
                   "8B model on a GPU: ≈ 2 s a call", GPU_CURVE),
        SimProfile("cpu-small", 1.5, 600, 24, 120, 120, 200, 0.15,
                   "3B model on CPU: ≈ 6 s a call", CPU_CURVE),
        SimProfile("fast-consolidator", 3.0, 250, 12, 120, 24, 200, 0.15,
                   "baseline, the consolidator writing at most 24 tokens", CPU_CURVE),
        SimProfile("ci-smollm2", *CI_SMOLLM2_RATES, 0.0,
                   "the CI's llama.cpp server + SmolLM2-135M on 2 threads, as measured here",
                   CPU_CURVE, SMOLLM2_CHARS_PER_TOKEN),
    )
}  # fmt: skip


def estimate_tokens(text: str) -> int:
    """Tokens in `text` by the usual rule of thumb for English, 4 characters a token
    (the simulator has no tokenizer; every count it reports uses this)."""
    return max(1, round(len(text) / 4))


def split_prompt_tokens(
    prompt: str, reused_chars: int, chars_per_token: float = 4.0
) -> tuple[int, int]:
    """(evaluated, cached) tokens of `prompt` when its first `reused_chars` characters are
    in the slot's KV cache, at `chars_per_token` (the profile's tokenizer; 4 by default).
    At least one token is always evaluated, as llama.cpp does to get the logits of the
    next token."""
    total = max(1, round(len(prompt) / chars_per_token))
    cached = min(total - 1, int(reused_chars // chars_per_token))
    return total - cached, cached


def answer_tokens(profile: SimProfile, kind: str, text: str, draw: float) -> int:
    """Tokens the simulated model writes for `text`: its own length (estimate_tokens),
    but at most the profile's length for that kind of answer: the calibrated length of
    what the measured model wrote (the rule-based text is denser than a model's prose,
    so a longer text is spread over that many tokens). `draw` in [-1, 1] sets the jitter."""
    length = estimate_tokens(text)
    if kind != "foreign":
        length = min(length, profile.output_tokens(kind))
    return max(1, round(length * (1 + profile.jitter * draw)))


# Ollama's own choice when OLLAMA_NUM_PARALLEL is unset, since its "Enable concurrency by
# default" change (ollama/ollama PR #4218): 4 parallel requests per model where the model
# fits in memory 4 times over, else 1.
OLLAMA_AUTO_PARALLEL = 4


@dataclass(frozen=True)
class SimConfig:
    profile: str = "baseline"
    # None: pick as Ollama does without OLLAMA_NUM_PARALLEL (see `slots`).
    num_parallel: int | None = None
    time_scale: float = 1.0
    seed: int = 7
    faults: tuple[tuple[str, str], ...] = ()  # (agent name, fault kind)
    keep_alive_s: float = 300.0  # simulated seconds, so also scaled
    models: tuple[str, ...] = DEFAULT_MODELS
    accept_any_model: bool = True
    prefix_cache: bool = True  # keep each slot's KV and reuse the longest common prefix
    # Stands in for "the model fits in memory for 4 parallel requests", which decides
    # Ollama's default of 4 or 1 slots (only used when `num_parallel` is None).
    fits_in_memory: bool = True
    # llama.cpp mode: answer `GET /props` with `total_slots` (and `GET /slots`) as
    # llama.cpp's server does. Off, the server is like Ollama: it says nothing of its slots.
    llama_props: bool = False
    # False: every slot at full single-stream speed (the profile's curve ignored), for
    # tests of scheduling logic that want a run's proportions exact.
    share_compute: bool = True

    @property
    def slots(self) -> int:
        """The requests it runs at once: `num_parallel`, else Ollama's own pick."""
        if self.num_parallel is not None:
            return self.num_parallel
        return OLLAMA_AUTO_PARALLEL if self.fits_in_memory else 1

    @property
    def slots_source(self) -> str:
        """Where `slots` came from, in words (for a client that knows this config)."""
        if self.num_parallel is not None:
            return "the simulated server's num_parallel"
        fits = "the model fits in memory" if self.fits_in_memory else "the model does not fit 4×"
        return f"the simulated server's default, as Ollama picks it ({fits})"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(
                f"profile: unknown {self.profile!r}; choose one of {', '.join(PROFILES)}"
            )
        if self.num_parallel is not None and (
            type(self.num_parallel) is not int or self.num_parallel < 1  # bool is no count
        ):
            raise ValueError(f"num_parallel: must be a whole number ≥ 1, got {self.num_parallel!r}")
        if not (isinstance(self.time_scale, int | float) and 0 < self.time_scale < math.inf):
            raise ValueError(f"time_scale: must be a finite number > 0, got {self.time_scale!r}")
        if not (isinstance(self.keep_alive_s, int | float) and self.keep_alive_s >= 0):
            raise ValueError(f"keep_alive_s: must be ≥ 0, got {self.keep_alive_s!r}")
        for item in self.faults:
            if not (isinstance(item, tuple) and len(item) == 2 and item[1] in FAULT_KINDS):
                raise ValueError(
                    f"faults: want (agent, kind) with kind in {FAULT_KINDS}, got {item!r}"
                )

    def fingerprint(self) -> str:
        """Names what the answers and timings depend on (the profile's numbers included)."""
        payload = {**asdict(self), "faults": sorted(self.faults), "version": VERSION}
        payload["profile_values"] = asdict(PROFILES[self.profile])
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"simulated:{self.profile}:{digest[:16]}"


@dataclass
class SimStats:
    """Counters for tests and the bench: written under `lock`, read a consistent `snapshot()`."""

    requests_by_path: Counter[str] = field(default_factory=Counter)
    # Completion requests (/api/chat and /api/generate) by X-Quorum-Agent ("" if none).
    chat_by_agent: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0  # requests holding a slot (prefilling or decoding)
    max_in_flight: int = 0
    peak_queue: int = 0  # most requests waiting for a slot at once
    model_loads: int = 0  # cold loads, reloads after keep-alive included
    prompt_tokens_evaluated: int = 0  # prefilled
    prompt_tokens_cached: int = 0  # reused from a slot's KV cache
    # (agent, time.monotonic()) as each completion request's body was read: when requests
    # really arrived, for the bench's cold-start stagger row.
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # Notified whenever the slots' occupancy changes, so a test can wait for a state.
    _changed: threading.Condition = field(
        default_factory=threading.Condition, repr=False, compare=False
    )

    def snapshot(self) -> SimStats:
        with self.lock:
            return replace(
                self,
                requests_by_path=Counter(self.requests_by_path),
                chat_by_agent=Counter(self.chat_by_agent),
                arrivals=list(self.arrivals),
                lock=threading.Lock(),
                _changed=threading.Condition(),
            )

    def answers_by_agent(self) -> dict[str, int]:
        """Completion requests that asked for an answer: prefix warm-ups (agent names
        ending in `.warmup`, see engine/run/warmup.py) and slot probes (`.probe`,
        engine/backends/slot_probe.py) left out."""
        return {
            a: n for a, n in self.chat_by_agent.items() if not a.endswith((".warmup", ".probe"))
        }

    def reset(self) -> None:
        """Start a new measurement (a shared server outlives any one run)."""
        with self.lock:
            self.requests_by_path.clear()
            self.chat_by_agent.clear()
            self.arrivals.clear()
            self.max_in_flight, self.peak_queue, self.model_loads = self.in_flight, 0, 0
            self.prompt_tokens_evaluated = self.prompt_tokens_cached = 0

    def _add(
        self, path: str | None = None, agent: str | None = None, loads: int = 0,
        evaluated: int = 0, cached: int = 0,
    ) -> None:  # fmt: skip
        with self.lock:
            if path is not None:
                self.requests_by_path[path] += 1
            if agent is not None:
                self.chat_by_agent[agent] += 1
                self.arrivals.append((agent, time.monotonic()))
            self.model_loads += loads
            self.prompt_tokens_evaluated += evaluated
            self.prompt_tokens_cached += cached

    def _slots(self, in_flight: int, queued: int) -> None:
        with self.lock:
            self.in_flight = in_flight
            self.max_in_flight = max(self.max_in_flight, in_flight)
            self.peak_queue = max(self.peak_queue, queued)
        with self._changed:
            self._changed.notify_all()

    def wait_for_in_flight(self, count: int, timeout_s: float) -> bool:
        """Block until exactly `count` requests hold a slot (False after `timeout_s`)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.in_flight == count, timeout_s)


class _Gone(Exception):
    """The client hung up or the server is stopping: end the request without an answer."""


@dataclass
class _Slot:
    """One server slot and its KV cache: the prompt it last read (Ollama and llama.cpp
    keep a slot's KV between requests and reuse its longest common prefix)."""

    index: int
    cached: str = ""
    busy: bool = False
    last_used: int = 0


def common_prefix_chars(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]: bisect on the first difference
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class _FifoSlots:
    """`num_parallel` slots served strictly in arrival order (a Semaphore is not fair).

    The request at the head of the queue gets the free slot whose cache shares the
    longest prefix with its prompt (least recently used among equals), as Ollama's and
    llama.cpp's slot selection do."""

    def __init__(self, n: int, stats: SimStats, *, reuse_prefix: bool) -> None:
        self._slots = [_Slot(i) for i in range(n)]
        self._n = self._free = n
        self._reuse = reuse_prefix
        self._uses = 0
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._stats = stats

    def acquire(self, abandon: Callable[[], bool], prompt: str = "") -> tuple[_Slot, int] | None:
        """(the slot, characters of `prompt` already in its cache), or None if abandoned."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            must_wait = self._free == 0 or self._waiting[0] is not ticket
            self._stats._slots(self._n - self._free, len(self._waiting) if must_wait else 0)
            while self._waiting[0] is not ticket or self._free == 0:
                if abandon():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()  # the next in line may be at the head now
                    return None
                self._cond.wait(_POLL_S)
            self._waiting.popleft()
            free = [s for s in self._slots if not s.busy]
            reused = {
                s.index: common_prefix_chars(s.cached, prompt) if self._reuse else 0 for s in free
            }
            slot = max(free, key=lambda s: (reused[s.index], -s.last_used))
            self._uses += 1
            slot.busy, slot.last_used = True, self._uses
            slot.cached = prompt[: reused[slot.index]]  # what is still valid while it works
            self._free -= 1
            self._stats._slots(self._n - self._free, len(self._waiting))
            self._cond.notify_all()
        return slot, reused[slot.index]

    def remember(self, slot: _Slot, prompt: str) -> None:
        """The slot has read all of `prompt`: its KV now holds it."""
        with self._cond:
            slot.cached = prompt if self._reuse else ""

    def release(self, slot: _Slot) -> None:
        with self._cond:
            slot.busy = False
            self._free += 1
            self._stats._slots(self._n - self._free, len(self._waiting))
            self._cond.notify_all()

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> int:
        """Sequences in a slot now (prefilling, decoding, or held by a hung request)."""
        return self._n - self._free

    def busy_flags(self) -> list[bool]:
        with self._cond:
            return [s.busy for s in self._slots]


@dataclass
class _Model:
    ready: threading.Event
    expires: float = math.inf  # monotonic; only meaningful while no request uses it
    active: int = 0
    loading: bool = False


def _peer_closed(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def answer_for_prompt(user: str) -> tuple[str, str, str]:
    """(role, kind, JSON text) for a prompt: the rules' answer, or a short generic one."""
    try:
        prompt = agents.read_prompt(user)
        if prompt.role == "consolidator" and prompt.answers:  # the full consolidation
            insights = use_method.merge_findings(prompt.answers)
            n = len(prompt.answers)
            summary = (
                f"{len(insights)} distinct insight(s) from {n} specialist answer(s); "
                f"most severe: {insights[0].title} ({insights[0].severity})."
                if insights
                else f"No issues in {n} specialist answer(s)."
            )
            merged = {"summary": summary, "insights": [i.to_dict() for i in insights]}
            return prompt.role, "consolidator", json.dumps(merged)
        if prompt.role == "consolidator":  # the compact verdict (or a warm-up's prefix of it)
            verdict = use_method.verdict_for(prompt.findings)
            return prompt.role, "consolidator", json.dumps(verdict, separators=(",", ":"))
        kind = "generalist" if prompt.role == use_method.ALL_ROLES else "specialist"
        return prompt.role, kind, json.dumps(use_method.agent_answer(prompt.values, prompt.role))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "foreign", "foreign", json.dumps(_GENERIC)


def _model_details(model: str) -> dict[str, Any]:
    found = re.search(r"(\d+(?:\.\d+)?)b\b", model.split(":")[-1])
    params = float(found.group(1)) if found else 8.0
    return {
        "name": model,
        "model": model,
        "size": round(params * 0.61e9),  # Q4_K_M is ≈ 4.9 bits per weight
        "digest": hashlib.sha256(model.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "simulated",
            "families": ["simulated"],
            "parameter_size": f"{params:.1f}B",
            "quantization_level": "Q4_K_M",
        },
    }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of parallel connects

    def __init__(self, address: tuple[str, int], sim: SimulatedOllamaServer) -> None:
        self.sim = sim
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exception(), OSError):  # a hang-up is routine; a bug is not
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-simulated"
    sys_version = ""
    disable_nagle_algorithm = True  # token lines must not wait for the client's delayed ACK

    @property
    def sim(self) -> SimulatedOllamaServer:
        return cast(_HTTPServer, self.server).sim

    def setup(self) -> None:
        super().setup()
        self.sim._track(self.connection, add=True)

    def finish(self) -> None:
        self.sim._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # an embedded backend must not write to the dashboard's stderr

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        self.sim.stats._add(path=path)
        endpoint = {"/api/chat": self._chat, "/api/generate": self._generate}.get(path)
        if endpoint is None:
            self.close_connection = True  # its body is unread
            self._send(404, b"404 page not found", "text/plain")
            return
        try:
            endpoint()
        except (_Gone, OSError):
            self.close_connection = True

    def _route(self, head: bool) -> None:
        path = self.path.split("?")[0]
        self.sim.stats._add(path=path)
        if path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8", head)
        elif path == "/api/version":
            self._json(200, {"version": VERSION}, head)
        elif path == "/api/tags":
            tags = [
                {**_model_details(m), "modified_at": self.sim.started_at}
                for m in self.sim.config.models
            ]
            self._json(200, {"models": tags}, head)
        elif path == "/api/ps":
            self._json(200, {"models": self.sim._loaded_models()}, head)
        elif self.sim.config.llama_props and path in ("/props", "/slots", "/health"):
            self._json(200, self.sim._llama_state(path), head)
        else:
            self._send(404, b"404 page not found", "text/plain", head)

    def _send(self, status: int, body: bytes, ctype: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: Mapping[str, Any], head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", head)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _read_body(self) -> dict[str, Any] | None:
        """The request's JSON object, or None after answering 400."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length <= 0 or length > _MAX_BODY:
            self.close_connection = True  # a body we did not read would poison keep-alive
            self._json(400, {"error": "missing or oversized request body (Content-Length)"})
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._json(400, {"error": f"invalid JSON body: {exc}"})
            return None
        if not isinstance(body, dict):
            self._json(400, {"error": "request body must be a JSON object"})
            return None
        return body

    def _model_of(self, body: Mapping[str, Any]) -> str | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._json(400, {"error": "model is required"})
            return None
        return model

    def _chat(self) -> None:
        t0 = time.monotonic()
        body = self._read_body()
        if body is None or (model := self._model_of(body)) is None:
            return
        messages = body.get("messages", [])
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in messages
        ):
            self._json(400, {"error": "messages must be a list of {role, content} objects"})
            return
        # Ollama answers an empty conversation by loading the model and nothing else.
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        prompt = "".join(m.get("content", "") for m in messages)
        self._complete(t0, body, model, user if messages else None, prompt, generate=False)

    def _generate(self) -> None:
        t0 = time.monotonic()
        body = self._read_body()
        if body is None or (model := self._model_of(body)) is None:
            return
        prompt, system = body.get("prompt", ""), body.get("system", "")
        if not isinstance(prompt, str) or not isinstance(system, str):
            self._json(400, {"error": "prompt and system must be strings"})
            return
        # Ollama answers an empty prompt by loading the model and nothing else.
        self._complete(t0, body, model, prompt or None, system + prompt, generate=True)

    def _complete(
        self,
        t0: float,
        body: Mapping[str, Any],
        model: str,
        user: str | None,
        prompt: str,
        *,
        generate: bool,
    ) -> None:
        """One completion for either endpoint: `user` is what is answered (None: only load
        the model), `prompt` everything the model reads (for the prefill time)."""
        sim, conn = self.sim, self.connection
        options = body.get("options")
        stream = body.get("stream", True) is not False

        def reply(content: str, done: bool = False, done_reason: str = "") -> dict[str, Any]:
            return _message(model, content, done, done_reason, generate=generate)

        agent = self.headers.get("X-Quorum-Agent") or ""
        sim.stats._add(agent=agent)
        fault = sim.fault_for(agent)
        if fault in ("busy", "error", "notfound") or not sim._knows(model):
            status, error = {
                "busy": (503, "server busy"),
                "error": (500, "simulated internal error"),
            }.get(fault or "", (404, f"model '{model}' not found"))
            self._json(status, {"error": error})
            return

        role, kind, text = answer_for_prompt(user) if user is not None else ("load", "load", "")
        text = _MALFORMED if fault == "malformed" else text
        rng = sim._rng(agent or role)
        profile, scale = sim.profile, sim.config.time_scale
        slow = _SLOW_FACTOR if fault == "slow" else 1.0
        tokens = answer_tokens(profile, kind, text, rng.uniform(-1, 1))
        pieces = [
            text[i * len(text) // tokens : (i + 1) * len(text) // tokens] for i in range(tokens)
        ]
        num_predict = options.get("num_predict") if isinstance(options, dict) else None
        done_reason = "stop"
        if isinstance(num_predict, int) and 0 < num_predict < len(pieces):
            pieces, done_reason = pieces[:num_predict], "length"

        try:
            load_s = sim._load(model, rng.uniform(*_WARM_LOAD_S) * scale, conn)
            if kind == "load":
                self._json(200, reply("", done=True, done_reason="load"))
                return
            lease = sim._slots.acquire(lambda: sim._stopping.is_set() or _peer_closed(conn), prompt)
            if lease is None:
                raise _Gone
            slot, reused_chars = lease
            try:
                if fault == "hang":
                    if stream:
                        self._start_stream()
                        self._chunk(_line(reply(pieces[0])))
                    sim._hold(conn)
                    raise _Gone
                evaluated, cached = split_prompt_tokens(
                    prompt, reused_chars, profile.prompt_chars_per_token
                )
                prefill_s = sim._prefill(evaluated / profile.prefill_tps * scale * slow, conn)
                sim._slots.remember(slot, prompt)
                sim.stats._add(evaluated=evaluated, cached=cached)
                if stream:
                    self._start_stream()
                per_token = scale * slow / profile.decode_tps
                decode_s = self._decode(
                    reply, pieces, per_token, stream, fault == "error-midstream"
                )
            finally:
                sim._slots.release(slot)
        finally:
            sim._release_model(model)
        if decode_s is None:
            return  # the stream already ended with its error line

        final = reply("" if stream else "".join(pieces), True, done_reason)
        metrics = {
            "total_duration": _ns(time.monotonic() - t0),
            "load_duration": _ns(load_s),
            "prompt_eval_count": evaluated,
            "prompt_eval_duration": _ns(prefill_s),
            "eval_count": len(pieces),
            "eval_duration": _ns(decode_s),
        }
        final.update({k: v for k, v in metrics.items() if v})  # Go's omitempty, as Ollama does
        if sim.config.prefix_cache:  # an extension: Ollama does not say how much it reused
            final[CACHED_COUNT_FIELD] = cached
        if stream:
            self._chunk(_line(final))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._json(200, final)

    def _decode(
        self,
        reply: Callable[[str], dict[str, Any]],
        pieces: list[str],
        per_token: float,
        stream: bool,
        fail: bool,
    ) -> float | None:
        """Emit the tokens on schedule; seconds taken, or None if it failed midstream."""
        start, sent, done = time.monotonic(), 0, 0.0
        while sent < len(pieces):
            done = self.sim._advance("decode", per_token, done, sent + 1, self.connection)
            # Everything due by now goes in one write: at small time scales the schedule
            # outruns the sleeps, and a write per token would fall behind it.
            due = int(done + 1e-9)
            if due <= sent:
                continue  # a shared curve's step ended before the next token
            upto = min(len(pieces), due)
            lines = [_line(reply(p)) for p in pieces[sent:upto] if p]
            if fail and upto >= _MIDSTREAM_TOKENS:
                error = {"error": "simulated runner failure: unexpected EOF"}
                if not stream:
                    self._json(500, error)
                    return None
                self._chunk(b"".join([*lines, _line(error)]))
                self.wfile.write(b"0\r\n\r\n")
                return None
            if stream and lines:
                self._chunk(b"".join(lines))
            sent = upto
        return time.monotonic() - start

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()


def _message(
    model: str, content: str, done: bool = False, done_reason: str = "", *, generate: bool = False
) -> dict[str, Any]:
    """One response object: `/api/chat` wraps the text in `message`, `/api/generate` sends
    it as `response`."""
    out: dict[str, Any] = {"model": model, "created_at": _now_iso()}
    if generate:
        out["response"] = content
    else:
        out["message"] = {"role": "assistant", "content": content}
    out["done"] = done
    if done_reason:
        out["done_reason"] = done_reason
    return out


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class SimulatedOllamaServer:
    """One simulated Ollama on `host:port` (port 0: any free port). Bound on construction."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.profile = PROFILES[config.profile]
        self.stats = SimStats()
        self.started_at = _now_iso()
        self._faults = dict(config.faults)
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._counters: Counter[str] = Counter()
        self._conns: set[socket.socket] = set()
        self._slots = _FifoSlots(config.slots, self.stats, reuse_prefix=config.prefix_cache)
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping.is_set()

    def start(self) -> SimulatedOllamaServer:
        if self._stopping.is_set():
            raise RuntimeError("a stopped SimulatedOllamaServer cannot be restarted")
        if self._thread is None:
            # A short poll interval keeps stop() prompt.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL_S},
                name=f"simulated-ollama-{self.url}", daemon=True,
            )  # fmt: skip
            self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung and queued requests, close every connection, stop serving."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            conns = list(self._conns)
        self._slots.wake_all()
        if self._thread is not None:
            self._httpd.shutdown()
        for conn in conns:  # idle keep-alive connections would otherwise still be served
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatedOllamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_fault(self, agent: str, kind: str | None) -> None:
        if kind is not None and kind not in FAULT_KINDS:
            raise ValueError(f"kind: unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
        with self._lock:
            if kind is None:
                self._faults.pop(agent, None)
            else:
                self._faults[agent] = kind

    def fault_for(self, agent: str) -> str | None:
        with self._lock:
            return self._faults.get(agent)

    # --- used by the handler ------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if not add:
                self._conns.discard(conn)
            elif self._stopping.is_set():  # accepted just as stop() took its list
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            else:
                self._conns.add(conn)

    def _knows(self, model: str) -> bool:
        names = self.config.models
        return self.config.accept_any_model or model in names or f"{model}:latest" in names

    def _rng(self, key: str) -> random.Random:
        """Reproducible per (seed, agent, nth request of that agent), whatever the interleaving."""
        with self._lock:
            self._counters[key] += 1
            n = self._counters[key]
        return random.Random(f"{self.config.seed}|{key}|{n}")

    def _load(self, model: str, warm_s: float, conn: socket.socket) -> float:
        """Mark `model` in use, loading it unless loaded; seconds spent. Concurrent first
        calls share one load. Pair with `_release_model`, even when this raises."""
        start = time.monotonic()
        with self._lock:
            entry = self._models.setdefault(model, _Model(threading.Event()))
            if entry.ready.is_set() and entry.active == 0 and entry.expires <= start:
                entry.ready = threading.Event()  # keep-alive ran out: it was unloaded
            entry.active += 1
            loader = not entry.ready.is_set() and not entry.loading
            entry.loading = entry.loading or loader
            ready = entry.ready
        if loader:
            self.stats._add(loads=1)
            try:  # no client check: the load goes on for the others if this client leaves
                self._pause(self.profile.load_s * self.config.time_scale, None)
            finally:
                with self._lock:
                    entry.loading = False
                ready.set()
        elif ready.is_set():
            self._pause(warm_s, conn)
        else:
            while not ready.wait(_POLL_S):
                if self._stopping.is_set() or _peer_closed(conn):
                    raise _Gone
        return time.monotonic() - start

    def _release_model(self, model: str) -> None:
        with self._lock:
            entry = self._models[model]
            entry.active -= 1
            if entry.active == 0:
                entry.expires = time.monotonic() + self.config.keep_alive_s * self.config.time_scale

    def _advance(
        self, kind: str, per_unit_s: float, done: float, target: float, conn: socket.socket
    ) -> float:
        """Work from `done` towards `target` units (tokens, or the whole prefill as 1) at
        the speed the running sequences leave each one (the profile's curve); a shared
        curve is read again every `_CURVE_STEP_S`. The units now done."""
        curve = self.profile.curve if self.config.share_compute else FLAT_CURVE
        factor = curve.factor(kind, self._slots.running)
        start = time.monotonic()
        wait = (target - done) * per_unit_s / factor
        self._wait_until(start + (wait if curve.flat else min(wait, _CURVE_STEP_S)), conn)
        return done + (time.monotonic() - start) * factor / per_unit_s

    def _prefill(self, seconds: float, conn: socket.socket) -> float:
        """The prompt's prefill: `seconds` alone, longer while other sequences run."""
        start, done = time.monotonic(), 0.0
        while seconds > 0 and done < 1.0:
            done = self._advance("prefill", seconds, done, 1.0, conn)
        return time.monotonic() - start

    def _pause(self, seconds: float, conn: socket.socket | None) -> float:
        start = time.monotonic()
        self._wait_until(start + seconds, conn)
        return time.monotonic() - start

    def _wait_until(self, deadline: float, conn: socket.socket | None) -> None:
        """Sleep to an absolute deadline (so per-token errors do not add up), stop-aware."""
        while (left := deadline - time.monotonic()) > 0:
            # Checked before every wait, however short: a non-streamed answer writes
            # nothing until the end, so this is the only way to see its client leave
            # (Ollama cancels the request when its client disconnects).
            if conn is not None and _peer_closed(conn):
                raise _Gone
            if self._stopping.wait(min(left, _POLL_S)):
                raise _Gone

    def _hold(self, conn: socket.socket) -> None:
        """A hung request: nothing more until the client leaves or the server stops."""
        while not self._stopping.wait(_POLL_S):
            if _peer_closed(conn):
                return

    def _llama_state(self, path: str) -> Any:
        """llama.cpp's `/props` (its `total_slots` is `--parallel`), `/slots` (one object
        per slot, `is_processing` while it works) and `/health`, in llama.cpp's shapes."""
        if path == "/health":
            return {"status": "ok"}
        if path == "/props":
            return {
                "total_slots": self.config.slots,
                "default_generation_settings": {"n_ctx": LLAMA_CTX_PER_SLOT},
                "model_path": f"simulated/{self.config.profile}.gguf",
                "build_info": VERSION,
            }
        return [
            {"id": i, "n_ctx": LLAMA_CTX_PER_SLOT, "is_processing": busy}
            for i, busy in enumerate(self._slots.busy_flags())
        ]

    def _loaded_models(self) -> list[dict[str, Any]]:
        now_mono, now = time.monotonic(), time.time()
        keep = self.config.keep_alive_s * self.config.time_scale
        with self._lock:
            live = [
                (name, e.expires if e.active == 0 else now_mono + keep)
                for name, e in self._models.items()
                if e.ready.is_set() and (e.active > 0 or e.expires > now_mono)
            ]
        return [
            {**_model_details(name), "expires_at": _now_iso(now + (expires - now_mono))}
            for name, expires in live
        ]


def simulated_server_model(config: SimConfig) -> ServerModel | None:
    """How this simulated server runs agents side by side, for pacing (engine/run/pacing.py):
    its profile's curve, and each agent's single-stream work from the profile's rates at
    the server's time scale — the expected values of the model it serves (no jitter, no
    model load). None when its slots do not share compute (`share_compute=False`)."""
    profile = PROFILES.get(config.profile)
    if profile is None or not config.share_compute or profile.curve.flat:
        return None

    def work(spec: AgentSpec, user: str) -> Job:
        prompt = max(
            1, round((len(spec.system_prompt) + len(user)) / profile.prompt_chars_per_token)
        )
        out = profile.output_tokens("agent")
        if spec.max_tokens is not None:
            out = min(out, spec.max_tokens)
        scale = config.time_scale
        return Job(prompt / profile.prefill_tps * scale, out / profile.decode_tps * scale)

    return ServerModel(
        profile.curve, work, f"the simulated {profile.name} profile's curve and rates"
    )


_shared: dict[SimConfig, SimulatedOllamaServer] = {}
_shared_lock = threading.Lock()


_SHARED_MAX = 8


def shared_server(config: SimConfig) -> SimulatedOllamaServer:
    """The process's running server for `config`, started on first use, stopped at exit.

    Shared: a `set_fault` on it is seen by every other user of the same config. A
    dashboard user who tries many settings would leave a server per setting behind, so
    only the `_SHARED_MAX` most recently used stay up.
    """
    evicted: list[SimulatedOllamaServer] = []
    with _shared_lock:
        server = _shared.pop(config, None)
        if server is None or not server.running:
            server = SimulatedOllamaServer(config).start()
        _shared[config] = server  # re-inserted: dicts keep insertion order, newest last
        while len(_shared) > _SHARED_MAX:
            evicted.append(_shared.pop(next(iter(_shared))))
    for old in evicted:
        old.stop()
    return server


def _stop_shared() -> None:
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.stop()


atexit.register(_stop_shared)


def serve_forever(config: SimConfig, host: str, port: int) -> None:
    """Serve until Ctrl-C (for `python -m engine serve-simulated`)."""
    with SimulatedOllamaServer(config, host, port) as server:
        faults = ", ".join(f"{agent}={kind}" for agent, kind in config.faults)
        print(
            f"Simulated Ollama ({config.profile}, {config.slots} slot(s), "
            f"time scale {config.time_scale:g}{', faults: ' + faults if faults else ''}) "
            f"at {server.url} — Ctrl-C to stop",
            flush=True,
        )
        try:
            while server.running:
                server._stopping.wait(1.0)
        except KeyboardInterrupt:
            pass
