"""The simulated server's timing model: model loads, slots with a prefix cache, prefill
and decode on the profile's throughput curve, and the counters tests and the bench read.

No HTTP in here (engine/simulator/handler.py speaks the protocols): a request is a
sequence of calls on `TimingModel`, each of which takes `gone`, a check that its client
is still there, and raises `RequestGone` when it left or the server is stopping.

Timing follows Ollama: a model load on first use (kept for `keep_alive_s`, concurrent
first calls share it), `num_parallel` slots with a FIFO queue in front of them (the wait
is inside `total_duration` but outside load/prefill/decode, so a client can compute
queue = total − load − prompt_eval − eval), prefill over the prompt and decode token by
token. Every duration, keep-alive included, is multiplied by `time_scale`.

Prefix caching, as Ollama's and llama.cpp's servers do: each slot keeps the KV of the
last prompt it read; the request at the head of the queue goes to the free slot whose
cached prompt shares the longest prefix with its own (least recently used among
equals); only the rest is prefilled, and at least one token always is.
`prefix_cache=False` turns it off (a server that re-reads every prompt).

Slots share compute: a stream's prefill and decode speed is the profile's curve
(engine/throughput.py) at the number of sequences in a slot, re-read as they start and
end. `share_compute=False` runs every slot at the single-stream rate.

Token counting: the simulator has no tokenizer; `estimate_tokens` counts 4 characters a
token, for prompts, cached prefixes (whole tokens within the common characters) and
answers alike. Decode follows the answer actually written, but at most the profile's
length for that kind of answer (`answer_tokens`), ± the profile's jitter.

Simplifications: every model runs at the profile's speed; a hung request holds a slot
and counts as running.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from engine.simulator.config import FAULT_KINDS, SimConfig
from engine.simulator.profiles import PROFILES, SimProfile
from engine.throughput import FLAT_CURVE

POLL_S = 0.05  # how often long waits look for a stop or a vanished client
_CURVE_STEP_S = 0.02  # how often a stream re-reads its speed while others start and end
_WARM_LOAD_S = (0.001, 0.005)  # what Ollama reports for a model that is already loaded
_SLOW_FACTOR = 3.0  # the `slow` fault's prefill and decode, this many times longer

# Whether a request's client has hung up (checked before every wait).
ClientGone = Callable[[], bool]


class RequestGone(Exception):
    """The client hung up or the server is stopping: end the request without an answer."""


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

    def add(
        self, path: str | None = None, agent: str | None = None, loads: int = 0,
        evaluated: int = 0, cached: int = 0,
    ) -> None:  # fmt: skip
        """Count a request to `path`, a completion request of `agent` (and when it
        arrived), model loads and prompt tokens evaluated or reused."""
        with self.lock:
            if path is not None:
                self.requests_by_path[path] += 1
            if agent is not None:
                self.chat_by_agent[agent] += 1
                self.arrivals.append((agent, time.monotonic()))
            self.model_loads += loads
            self.prompt_tokens_evaluated += evaluated
            self.prompt_tokens_cached += cached

    def occupancy(self, in_flight: int, queued: int) -> None:
        """The slots now: `in_flight` held, `queued` waiting (peaks kept)."""
        with self.lock:
            self.in_flight = in_flight
            self.max_in_flight = max(self.max_in_flight, in_flight)
            self.peak_queue = max(self.peak_queue, queued)
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, state: Callable[[SimStats], bool], timeout_s: float) -> bool:
        """Block until `state(self)` holds, checked as the slots' occupancy changes (False
        after `timeout_s`)."""
        with self._changed:
            return self._changed.wait_for(lambda: state(self), timeout_s)

    def wait_for_in_flight(self, count: int, timeout_s: float) -> bool:
        """Block until exactly `count` requests hold a slot (False after `timeout_s`)."""
        return self.wait_for(lambda stats: stats.in_flight == count, timeout_s)


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
            self._stats.occupancy(self._n - self._free, len(self._waiting) if must_wait else 0)
            while self._waiting[0] is not ticket or self._free == 0:
                if abandon():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()  # the next in line may be at the head now
                    return None
                self._cond.wait(POLL_S)
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
            self._stats.occupancy(self._n - self._free, len(self._waiting))
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
            self._stats.occupancy(self._n - self._free, len(self._waiting))
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


@dataclass(frozen=True)
class Lease:
    """A slot held for one request: the prompt it reads and how much of it the slot's
    cache already holds (characters)."""

    slot: _Slot
    prompt: str
    reused_chars: int


@dataclass(frozen=True)
class Prefill:
    """A prompt read: tokens evaluated, tokens reused from the slot's cache, seconds."""

    evaluated: int
    cached: int
    seconds: float


class TimingModel:
    """One simulated server's state and timing, shared by all its requests (threads)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.profile = PROFILES[config.profile]
        self.stats = SimStats()
        self._faults = dict(config.faults)
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._counters: Counter[str] = Counter()
        self._slots = _FifoSlots(config.slots, self.stats, reuse_prefix=config.prefix_cache)
        self._stopping = threading.Event()

    # --- the server's life ----------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> bool:
        """Release every waiting and hung request; False if it was already stopping."""
        with self._lock:
            if self._stopping.is_set():
                return False
            self._stopping.set()
        self._slots.wake_all()
        return True

    def wait_stopped(self, timeout_s: float) -> bool:
        """Block until the server stops (False after `timeout_s`)."""
        return self._stopping.wait(timeout_s)

    # --- what a request is answered with -----------------------------------------------

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

    def knows(self, model: str) -> bool:
        names = self.config.models
        return self.config.accept_any_model or model in names or f"{model}:latest" in names

    def rng(self, key: str) -> random.Random:
        """Reproducible per (seed, agent, nth request of that agent), whatever the interleaving."""
        with self._lock:
            self._counters[key] += 1
            n = self._counters[key]
        return random.Random(f"{self.config.seed}|{key}|{n}")

    # --- one request's steps, in order ------------------------------------------------------

    @contextlib.contextmanager
    def model_in_use(self, model: str, rng: random.Random, gone: ClientGone) -> Iterator[float]:
        """`model` in use for the block, loaded first unless it is; yields the seconds the
        load took (a warm model's few milliseconds drawn from `rng`)."""
        try:
            yield self._load(model, rng.uniform(*_WARM_LOAD_S) * self.config.time_scale, gone)
        finally:
            self._release_model(model)

    @contextlib.contextmanager
    def slot(self, prompt: str, gone: ClientGone) -> Iterator[Lease]:
        """A slot for the block, after every request that arrived earlier got one."""
        held = self._slots.acquire(lambda: self._stopping.is_set() or gone(), prompt)
        if held is None:
            raise RequestGone
        slot, reused_chars = held
        try:
            yield Lease(slot, prompt, reused_chars)
        finally:
            self._slots.release(slot)

    def prefill(self, lease: Lease, gone: ClientGone, *, slow: bool = False) -> Prefill:
        """Read the lease's prompt past what its slot has cached; the slot then holds it."""
        profile = self.profile
        evaluated, cached = split_prompt_tokens(
            lease.prompt, lease.reused_chars, profile.prompt_chars_per_token
        )
        factor = _SLOW_FACTOR if slow else 1.0
        seconds = evaluated / profile.prefill_tps * self.config.time_scale * factor
        start, done = time.monotonic(), 0.0
        while seconds > 0 and done < 1.0:  # longer while other sequences run
            done = self._advance("prefill", seconds, done, 1.0, gone)
        elapsed = time.monotonic() - start
        self._slots.remember(lease.slot, lease.prompt)
        self.stats.add(evaluated=evaluated, cached=cached)
        return Prefill(evaluated, cached, elapsed)

    def decode(self, tokens: int, gone: ClientGone, *, slow: bool = False) -> Iterator[int]:
        """Decode `tokens` on schedule: yields how many are done each time that grows (the
        caller sends them), up to `tokens`."""
        factor = _SLOW_FACTOR if slow else 1.0
        per_token = self.config.time_scale * factor / self.profile.decode_tps
        sent, done = 0, 0.0
        while sent < tokens:
            done = self._advance("decode", per_token, done, sent + 1, gone)
            # Everything due by now is reported at once: at small time scales the schedule
            # outruns the sleeps, and a write per token would fall behind it.
            due = int(done + 1e-9)
            if due <= sent:
                continue  # a shared curve's step ended before the next token
            sent = min(tokens, due)
            yield sent

    def hold(self, gone: ClientGone) -> None:
        """A hung request: nothing more until the client leaves or the server stops."""
        while not self._stopping.wait(POLL_S):
            if gone():
                return

    # --- what the server says about itself --------------------------------------------------

    def loaded_models(self) -> list[tuple[str, float]]:
        """(model, when it unloads as time.time()) of every model loaded now."""
        now_mono, now = time.monotonic(), time.time()
        keep = self.config.keep_alive_s * self.config.time_scale
        with self._lock:
            live = [
                (name, e.expires if e.active == 0 else now_mono + keep)
                for name, e in self._models.items()
                if e.ready.is_set() and (e.active > 0 or e.expires > now_mono)
            ]
        return [(name, now + (expires - now_mono)) for name, expires in live]

    def slots_busy(self) -> list[bool]:
        """Each slot: whether a request holds it now."""
        return self._slots.busy_flags()

    # --- timing -------------------------------------------------------------------------

    def _load(self, model: str, warm_s: float, gone: ClientGone) -> float:
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
            self.stats.add(loads=1)
            try:  # no client check: the load goes on for the others if this client leaves
                self._wait_until(time.monotonic() + self.profile.load_s * self.config.time_scale)
            finally:
                with self._lock:
                    entry.loading = False
                ready.set()
        elif ready.is_set():
            self._wait_until(time.monotonic() + warm_s, gone)
        else:
            while not ready.wait(POLL_S):
                if self._stopping.is_set() or gone():
                    raise RequestGone
        return time.monotonic() - start

    def _release_model(self, model: str) -> None:
        with self._lock:
            entry = self._models[model]
            entry.active -= 1
            if entry.active == 0:
                entry.expires = time.monotonic() + self.config.keep_alive_s * self.config.time_scale

    def _advance(
        self, kind: str, per_unit_s: float, done: float, target: float, gone: ClientGone
    ) -> float:
        """Work from `done` towards `target` units (tokens, or the whole prefill as 1) at
        the speed the running sequences leave each one (the profile's curve); a shared
        curve is read again every `_CURVE_STEP_S`. The units now done."""
        curve = self.profile.curve if self.config.share_compute else FLAT_CURVE
        factor = curve.factor(kind, self._slots.running)
        start = time.monotonic()
        wait = (target - done) * per_unit_s / factor
        self._wait_until(start + (wait if curve.flat else min(wait, _CURVE_STEP_S)), gone)
        return done + (time.monotonic() - start) * factor / per_unit_s

    def _wait_until(self, deadline: float, gone: ClientGone | None = None) -> None:
        """Sleep to an absolute deadline (so per-token errors do not add up), stop-aware."""
        while (left := deadline - time.monotonic()) > 0:
            # Checked before every wait, however short: a non-streamed answer writes
            # nothing until the end, so this is the only way to see its client leave
            # (Ollama cancels the request when its client disconnects).
            if gone is not None and gone():
                raise RequestGone
            if self._stopping.wait(min(left, POLL_S)):
                raise RequestGone
