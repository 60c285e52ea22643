"""The engine's front door, used by the CLI, the dashboard and the benchmarks alike.

`Engine.analyze` = cache lookup → (single-flight) run → cache store → history. It is
synchronous: each run gets its own `asyncio.run`, and the backend (with its pooled
httpx client) is created inside that loop and closed before it ends, so no client is
ever shared across event loops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from engine.backends.base import Backend, ServerStatus
from engine.backends.endpoints import EndpointSpec
from engine.backends.live_state import live_state
from engine.backends.ollama import OllamaBackend
from engine.backends.pool import PoolBackend, PoolMember, watched_transport
from engine.backends.registry import DEFAULT_KIND, BackendSpec, ClientOptions, spec
from engine.backends.server_slots import ServerSlots
from engine.backends.slot_probe import (
    LEARNED_TTL_S,
    LearnedSlots,
    contradicted,
    learn_slots,
)
from engine.records import AgentRun, AnalysisResult, CacheInfo
from engine.redact import redact_url
from engine.report.compare import Comparison
from engine.report.timeline import curve_samples, single_stream_work
from engine.run.agents import DEFAULT_MODEL, DEFAULT_ROSTER, Roster
from engine.run.pacing import ServerModel
from engine.run.runner import (
    ProgressEvent,
    ProgressFn,
    RunSettings,
    SlotLearner,
    emit,
    run_analysis,
)
from engine.run.settings import CONSOLIDATION_VARIANTS
from engine.simulator import SimConfig, SimulatedOllamaServer, shared_server, simulated_server_model
from engine.sources.snapshot import Snapshot
from engine.store.base import HistoryStore, ResultStore, SlotMemory, ttl_for
from engine.store.disk import ResultCache
from engine.store.state import slot_memory_for
from engine.throughput import Job, learned_curve, merge_samples

CURVE_TTL_S = 7 * 24 * 3600.0  # a server's measured curve, kept a week (latest samples win)

SHARED_RUN = "the same analysis"  # the `agent` of a "waiting" progress event
# What `BackendConfig.url()` says of the embedded simulated server: it has no URL until a
# backend is built (`BackendConfig.started`), and asking where it is must not start it.
EMBEDDED_SIMULATOR = "embedded simulated server"


def default_data_dir() -> Path:
    """Where the cache and history live: $QUORUM_DATA_DIR, else ~/.cache/quorum."""
    env = os.environ.get("QUORUM_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quorum"


@dataclass(frozen=True)
class BackendConfig:
    kind: str = DEFAULT_KIND  # a kind of engine/backends/registry.py
    base_url: str | None = None  # None: the kind's default (OLLAMA_HOST), or the embedded server
    model: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False)  # never cached, logged or shown
    sim: SimConfig = field(default_factory=SimConfig)
    timeout_s: float = 300.0
    server_slots: int | None = (
        None  # None: auto (ask the server; see engine/backends/slot_probe.py)
    )
    # Several LLM hosts (engine/backends/endpoints.py); two or more make a pool (engine/backends/pool.py)
    # and then kind/base_url/server_slots above are not used: each endpoint has its own.
    endpoints: tuple[EndpointSpec, ...] = ()

    def __post_init__(self) -> None:
        known = spec(self.kind)
        if known.needs_base_url and not self.base_url and not self.endpoints:
            raise ValueError(
                f"base-url: required for the {self.kind} backend (e.g. {known.url_example})"
            )
        if not self.model.strip():
            raise ValueError("model: must not be empty")
        if self.server_slots is not None and self.server_slots < 1:
            raise ValueError(f"server slots: must be 'auto' or ≥ 1, got {self.server_slots}")

    @property
    def spec(self) -> BackendSpec:
        return spec(self.kind)

    @property
    def simulated(self) -> bool:
        if self.endpoints:
            return any(member.simulated for member in self.members())
        return self.spec.simulator

    @property
    def embedded(self) -> bool:
        """The embedded simulated server, which the engine starts itself (no URL given)."""
        return self.spec.simulator and not self.base_url and not self.endpoints

    @property
    def pooled(self) -> bool:
        return len(self.endpoints) > 1

    def started(self) -> BackendConfig:
        """This config with its embedded server running and its URL in `base_url`: the
        process's shared server for `sim`, started on first use. Any other config as is."""
        if not self.embedded:
            return self
        return replace(self, base_url=shared_server(self.sim).url)

    def members(self) -> tuple[BackendConfig, ...]:
        """One single-endpoint config per LLM host (just this one without endpoints)."""
        if not self.endpoints:
            return (self,)
        return tuple(
            BackendConfig(
                kind=spec.kind,
                base_url=spec.url,
                model=spec.model or self.model,
                api_key=spec.api_key(),
                sim=self.sim,
                timeout_s=self.timeout_s,
                server_slots=spec.slots,
            )
            for spec in self.endpoints
        )

    def url(self) -> str:
        """Where the server is, to show or to ask (the endpoints' joined by ", "). The
        embedded simulated server has none until started: EMBEDDED_SIMULATOR, and no side
        effect (`started()` starts it; `factory()` does when it builds the backend)."""
        if self.endpoints:
            return ", ".join(redact_url(member.url()) for member in self.members())
        if self.base_url:
            return self.base_url
        if self.embedded:
            return EMBEDDED_SIMULATOR
        default = self.spec.default_url
        return default() if default is not None else ""

    def fingerprint(self) -> str:
        """What about the backend changes an answer: never the API key, never a random port."""
        if self.endpoints:
            members = ";".join(member.fingerprint() for member in self.members())
            return f"pool[{members}]|{self.model}"
        where = self.sim.fingerprint() if self.simulated else self.url()
        return f"{self.kind}|{where}|{self.model}"

    async def endpoint_slots(self) -> list[ServerSlots]:
        """Each endpoint's slots (configured, or asked of every server at once)."""
        if not self.endpoints:
            return [await self.slots()]
        return list(await asyncio.gather(*(member.slots() for member in self.members())))

    def pool_slots(self, parts: list[ServerSlots]) -> ServerSlots:
        """The pool's slots: the sum of its endpoints' (no limit if one has none)."""
        if len(parts) == 1:
            return parts[0]
        urls = [redact_url(member.url()) for member in self.members()]
        listing = "; ".join(
            f"{url}: {'no limit' if part.slots is None else part.slots} ({part.source})"
            for url, part in zip(urls, parts, strict=True)
        )
        counts = [part.slots for part in parts]
        if any(count is None for count in counts):
            return ServerSlots(None, f"no limit: an endpoint has none · {listing}")
        total = sum(count or 0 for count in counts)
        return ServerSlots(total, f"sum of {len(parts)} endpoints · {listing}")

    async def slots(self) -> ServerSlots:
        """How many requests to send at once: as configured, else what the server says."""
        if self.endpoints:
            return self.pool_slots(await self.endpoint_slots())
        if self.server_slots is not None:
            return ServerSlots(self.server_slots, "configured (--server-slots / quorum.toml)")
        if self.simulated:
            # Like Ollama, the simulated server does not report its slots; it is configured
            # by the same SimConfig we hold (--sim-num-parallel), so we know them.
            return ServerSlots(self.sim.slots, self.sim.slots_source)
        return await self.spec.probe_slots(self.url(), api_key=self.api_key)

    def factory(
        self,
        max_connections: int = 16,
        *,
        slots: list[ServerSlots] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Backend:
        """A new backend; call it inside the event loop that will use it. Size the pool to
        the fan-out: a smaller pool would queue requests inside the client, unseen.
        With several endpoints: a pool over them, `slots` being each one's (None: unknown)."""
        if self.endpoints:
            return self._pool(max_connections, slots)
        if self.embedded:  # the one step that starts the embedded server
            return self.started().factory(max_connections, transport=transport)
        options = ClientOptions(self.api_key, self.timeout_s, max_connections, transport)
        return self.spec.build(self.url(), options)

    def _pool(self, max_connections: int, slots: list[ServerSlots] | None) -> Backend:
        if len(self.endpoints) == 1:  # one endpoint: nothing to spread, nothing to watch
            return self.members()[0].factory(max_connections)
        counts = [part.slots for part in slots] if slots else [None] * len(self.endpoints)
        members = [
            PoolMember(
                # Every endpoint may end up serving the whole fan-out (after the others failed).
                config.factory(max_connections, transport=watched_transport(max_connections)),
                slots=count,
                model=spec.model,
            )
            for config, spec, count in zip(self.members(), self.endpoints, counts, strict=True)
        ]
        return PoolBackend(members, default_model=self.model)


def isolates_variants(backend: BackendConfig) -> bool:
    """Whether `Engine.compare_consolidation` gives each variant a server of its own: only
    on the embedded simulator (a server we start); any other keeps its slots' KV cache."""
    return backend.embedded


def _run_sync(coro: Any) -> Any:
    """`asyncio.run`, also from a thread that already runs a loop (then in a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Engine:
    def __init__(
        self,
        backend: BackendConfig,
        *,
        roster: Roster = DEFAULT_ROSTER,
        cache: ResultStore | None = None,
        history: HistoryStore | None = None,
        slot_memory: SlotMemory | None = None,
    ) -> None:
        self.backend = backend
        self.roster = roster
        self.cache = cache
        self.history = history
        # What was learned about servers that do not report their slots (Ollama).
        self.slot_memory = slot_memory if slot_memory is not None else slot_memory_for(cache)
        # In-process single-flight: callers of a key that is already running wait for
        # that run's result instead of queueing on the cross-process lock and the disk.
        self._flights: dict[tuple[str, bool], concurrent.futures.Future[AnalysisResult]] = {}
        self._flights_lock = threading.Lock()
        self._asked: list[ServerSlots] | None = None  # what each server said, asked once
        self._endpoint_slots: list[ServerSlots] | None = None  # each LLM host's

    def server_slots(self) -> ServerSlots:
        """The server's slots (configured, reported, or learned and remembered); the
        dashboard shows them. With several endpoints: their sum (the source lists each)."""
        if self._asked is None:
            self._asked = _run_sync(self.backend.endpoint_slots())
        members = self.backend.members()
        parts = [self._recalled(m, p) for m, p in zip(members, self._asked, strict=True)]
        self._endpoint_slots = parts
        return self.backend.pool_slots(parts)

    @staticmethod
    def _slot_key(member: BackendConfig) -> str:
        """What is learned about a server is kept under its URL (the embedded server's
        own, from the registry: what one process's runs of one config talk to)."""
        return f"{redact_url(member.started().url())}|{member.model}"

    def _recalled(self, member: BackendConfig, asked: ServerSlots) -> ServerSlots:
        """A server to learn: what was learned about it, if still valid; else as asked."""
        if not asked.learn:
            return asked
        record = self.slot_memory.recall(self._slot_key(member))
        try:
            learned = LearnedSlots.from_dict(record) if record is not None else None
        except ValueError:
            learned = None
        if learned is None or (asked.server and learned.server != asked.server):
            return asked  # never learned, expired, or the server changed: learn again
        return learned.server_slots()

    def _remember(self, member: BackendConfig, learned: LearnedSlots) -> None:
        self.slot_memory.remember(self._slot_key(member), learned.to_dict(), LEARNED_TTL_S)

    async def _learn(
        self,
        member: BackendConfig,
        asked: ServerSlots,
        clock: Callable[[], float],
        backend: Backend | None = None,
    ) -> tuple[ServerSlots, list[AgentRun]]:
        """Probe one endpoint (engine/backends/slot_probe.py) and remember what it showed. The
        run's own backend is used when it speaks Ollama's native API (its connections
        then serve the agents too)."""
        native = backend if isinstance(backend, OllamaBackend) else None
        learned, probes = await learn_slots(
            member.url(), member.model, clock, timeout_s=member.timeout_s,
            server=asked.server, backend=native,
        )  # fmt: skip
        if learned is None:
            errors = [p.error for p in probes if p.error]
            why = errors[0] if errors else "the server reported no timings"
            return ServerSlots(1, f"assumed 1: the slot probe failed ({why})"), probes
        self._remember(member, learned)
        return learned.server_slots(), probes

    def _learner(self) -> SlotLearner | None:
        """For one endpoint whose slots are still to be learned: the run's first step."""
        slots = self.server_slots()
        if self.backend.pooled or not slots.learn:
            return None
        member, asked = self.backend.members()[0], slots
        return lambda backend, clock: self._learn(member, asked, clock, backend)

    def _learn_pool(self) -> None:
        """Several endpoints: learn each unknown one before the run (not on its waterfall)."""
        if not self.backend.pooled:
            return
        started = time.perf_counter()
        for member, part in zip(self.backend.members(), self.endpoint_slots(), strict=True):
            if part.learn:
                _run_sync(self._learn(member, part, lambda: time.perf_counter() - started))

    def _check_learned(self, result: AnalysisResult) -> None:
        """A run that contradicts the learned slots (the server queued requests we sent
        within them) replaces them with what it showed (one endpoint only)."""
        slots = self.server_slots()
        if self.backend.pooled or not slots.learned or result.server_slots is None:
            return
        if result.mode != "parallel":
            return
        found = contradicted(result.server_slots, result.agents, slots.server)
        if found is not None:
            self._remember(self.backend.members()[0], found)

    def cache_key(self, snapshot: Snapshot, settings: RunSettings) -> str:
        parts = (
            snapshot.cache_key(),
            self.roster.fingerprint(),
            self.backend.fingerprint(),
            settings.fingerprint(),
        )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]

    def analyze(
        self,
        snapshot: Snapshot,
        settings: RunSettings,
        *,
        refresh: bool = False,
        progress: ProgressFn | None = None,
    ) -> AnalysisResult:
        """Serve from the cache when it holds this analysis, else run it — once, however
        many callers (threads here, or other processes sharing the cache) ask at the same
        time. `refresh` skips the lookup but stores the new result."""
        started = time.perf_counter()
        key = self.cache_key(snapshot, settings)
        # One leader per key does the lookup and, on a miss, the run; concurrent callers
        # wait for its result instead of all touching the disk (and the GIL) at once.
        flight_key = (key, refresh)
        result: AnalysisResult | None = None
        while result is None:
            with self._flights_lock:
                flight = self._flights.get(flight_key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[flight_key] = concurrent.futures.Future()
            if leader:
                try:
                    result = None if refresh else self._cached(key, started)
                    if result is None:
                        result = self._lead(key, snapshot, settings, refresh, progress, started)
                    flight.set_result(result)
                except BaseException as exc:
                    flight.set_exception(exc)
                    raise
                finally:
                    with self._flights_lock:
                        del self._flights[flight_key]
            else:
                # Say so: the caller may wait for a whole run (the Live page's status box).
                emit(progress, ProgressEvent(SHARED_RUN, "waiting", time.perf_counter() - started))
                try:
                    result = self._follow(flight.result(), started)
                except Exception:
                    raise
                except BaseException:
                    # The leader was interrupted (its UI session stopped, Ctrl-C): that is
                    # not our error; take the lead ourselves on the next turn.
                    continue
        result.run_id = uuid.uuid4().hex[:12]  # every served result, hits too, is one run
        if self.history is not None:
            self.history.append(result)
        return result

    def _lead(
        self,
        key: str,
        snapshot: Snapshot,
        settings: RunSettings,
        refresh: bool,
        progress: ProgressFn | None,
        started: float,
    ) -> AnalysisResult:
        if self.cache is None:
            return self._run(snapshot, settings, progress)
        with self.cache.single_flight(key) as fence:
            # Another process may have stored this very answer while we waited.
            result = None if refresh else self._cached(key, started, recheck=True)
            if result is None:
                result = self._run(snapshot, settings, progress)
                ttl = ttl_for(result, self.cache.ttl_s, self.cache.degraded_ttl_s)
                if self.cache.set(key, result.to_dict(), ttl_s=ttl, fence=fence):
                    result.cache = CacheInfo(hit=False, ttl_s=ttl)
            return result

    @staticmethod
    def _follow(shared: AnalysisResult, started: float) -> AnalysisResult:
        """Our copy of what another caller's lookup or run produced, served as a hit."""
        result = AnalysisResult.from_dict(shared.to_dict())
        if not shared.cache.hit:
            result.cache = CacheInfo(hit=True, age_s=0.0, ttl_s=shared.cache.ttl_s)
        result.created_at = time.time()
        result.execution_time_s = time.perf_counter() - started
        return result

    def _cached(self, key: str, started: float, recheck: bool = False) -> AnalysisResult | None:
        if self.cache is None:
            return None
        hit = self.cache.get(key, count_miss=not recheck)
        if hit is None:
            return None
        try:
            result = AnalysisResult.from_dict(hit.result)
        except (KeyError, TypeError, ValueError):
            return None  # an entry from an older format: run again
        result.cache = CacheInfo(hit=True, age_s=round(hit.age_s, 3), ttl_s=hit.ttl_s)
        result.created_at = time.time()
        result.execution_time_s = time.perf_counter() - started
        return result

    def _run(
        self, snapshot: Snapshot, settings: RunSettings, progress: ProgressFn | None
    ) -> AnalysisResult:
        self._learn_pool()
        learner = self._learner()
        slots = self.server_slots()
        result: AnalysisResult = _run_sync(
            run_analysis(
                snapshot,
                self.roster,
                lambda: self.backend.factory(
                    max_connections=len(self.roster.specialists) + 1, slots=self._endpoint_slots
                ),
                settings,
                model=self.backend.model,
                progress=progress,
                simulated_profile=self.backend.sim.profile if self.backend.simulated else None,
                slots=slots,
                learn_slots=learner,
                server_model=self._server_model(),
            )
        )
        result.simulated_time_scale = (
            self.backend.sim.time_scale if self.backend.simulated else None
        )
        result.host, result.source = snapshot.host, snapshot.source
        self._check_learned(result)
        self._learn_curve(result)
        return result

    def _server_model(self) -> ServerModel | None:
        """How this server runs calls side by side, for pacing (engine/run/pacing.py): the
        simulated server's profile, else what this server's measured runs showed (its
        curve and each agent's single-stream work); None while nothing is known."""
        if self.backend.pooled:
            return None
        if self.backend.simulated:
            return simulated_server_model(self.backend.sim)
        record = self.slot_memory.recall(self._curve_key()) or {}
        try:
            curve = learned_curve(record.get("samples", {}), int(record.get("runs", 0)))
            works = {str(k): Job(float(v[0]), float(v[1])) for k, v in record["work"].items()}
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return None
        if curve is None or not works:
            return None
        typical = Job(
            statistics.median(j.prefill_s for j in works.values()),
            statistics.median(j.decode_s for j in works.values()),
        )
        return ServerModel(
            curve,
            lambda spec, user: works.get(spec.name, typical),
            "this server's measured runs (its curve, each agent's work alone)",
        )

    def _curve_key(self) -> str:
        return "curve|" + self._slot_key(self.backend.members()[0])

    def _learn_curve(self, result: AnalysisResult) -> None:
        """Fold this run's per-stream rates into what is known of the server's curve
        (one endpoint only), with each answered agent's single-stream work, and attach
        the curve learned so far to the result."""
        if self.backend.pooled:
            return
        key = self._curve_key()
        record = self.slot_memory.recall(key) or {}
        try:
            merged = merge_samples(record.get("samples", {}), curve_samples(result))
            runs = int(record.get("runs", 0)) + 1
            work = {str(k): list(v) for k, v in dict(record.get("work", {})).items()}
        except (TypeError, ValueError, AttributeError):
            merged, runs, work = merge_samples({}, curve_samples(result)), 1, {}
        learned = learned_curve(merged, runs)
        if learned is not None:
            work.update(single_stream_work(result, learned))
        self.slot_memory.remember(key, {"samples": merged, "runs": runs, "work": work}, CURVE_TTL_S)
        if learned is not None:
            result.server_curve = {
                "prefill": list(learned.prefill),
                "decode": list(learned.decode),
                "source": learned.source,
            }

    def compare(
        self,
        snapshot: Snapshot,
        settings: RunSettings,
        *,
        progress: CompareProgress | None = None,
        finished: CompareFinished | None = None,
    ) -> Comparison:
        """Before and after: single, sequential, parallel (all fresh), then parallel
        again from the cache; then the consolidation variants (`compare_consolidation`),
        under their own keys. Without a configured cache a throw-away one is used.

        `sequential` is the "before" of ../shared/plan/next-steps-multi-agent-optimization.md:
        one agent after another with the full consolidation (the Consolidator rewrites every
        insight) and no warm-ups. `Comparison.to_dict()` is `compare --json`.
        `progress(run, event)` gets every run's live events, `finished(run, result)` each
        run's result as soon as it exists (`engine.report.compare.COMPARE_STEPS` is their order)."""
        cache = self.cache
        scratch: ResultStore | None = None
        if cache is None:
            import tempfile

            scratch = cache = ResultCache(tempfile.mkdtemp(prefix="quorum-compare-"))
        engine = Engine(
            self.backend, roster=self.roster, cache=cache, history=self.history,
            slot_memory=self.slot_memory,
        )  # fmt: skip
        plan = {
            "single": (replace(settings, mode="single"), True),
            "sequential": (
                replace(settings, mode="sequential", consolidation="full", warmup=False),
                True,
            ),
            "parallel": (replace(settings, mode="parallel"), True),
            "cached": (replace(settings, mode="parallel"), False),
        }
        runs: dict[str, AnalysisResult] = {}
        try:
            for name, (run_settings, refresh) in plan.items():
                runs[name] = engine.analyze(
                    snapshot, run_settings, refresh=refresh, progress=_tagged(progress, name)
                )
                if finished is not None:
                    finished(name, runs[name])
            runs.update(
                self.compare_consolidation(
                    snapshot, settings, cache=cache, progress=progress, finished=finished
                )
            )
        finally:
            if scratch is not None:
                scratch.close()
        return Comparison.of(runs)

    def compare_consolidation(
        self,
        snapshot: Snapshot,
        settings: RunSettings,
        *,
        cache: ResultStore | None = None,
        progress: CompareProgress | None = None,
        finished: CompareFinished | None = None,
    ) -> dict[str, AnalysisResult]:
        """Fresh parallel runs of `snapshot`, one per `CONSOLIDATION_VARIANTS` entry: full
        consolidation without warm-ups (the sequential baseline's), compact cold, compact
        warmed.

        On the embedded simulated server each variant gets a server of its own with the
        model loaded and empty slots, so that no variant reuses a prefix another one left
        in a slot. A real server's slots keep their KV between runs (nothing here can
        empty them), so there a later variant may find more of its prompt cached."""
        runs: dict[str, AnalysisResult] = {}
        for variant in CONSOLIDATION_VARIANTS:
            run_settings = replace(
                settings, mode="parallel", consolidation=variant.style, warmup=variant.warmup
            )
            with self._fresh_backend() as backend:
                engine = Engine(
                    backend, roster=self.roster, cache=cache, history=self.history,
                    slot_memory=self.slot_memory,
                )  # fmt: skip
                runs[variant.key] = engine.analyze(
                    snapshot, run_settings, refresh=True, progress=_tagged(progress, variant.key)
                )
            if finished is not None:
                finished(variant.key, runs[variant.key])
        return runs

    @contextlib.contextmanager
    def _fresh_backend(self) -> Iterator[BackendConfig]:
        """A simulated server of our own (model loaded, slots empty) for the embedded
        simulator; the configured backend otherwise."""
        if not isolates_variants(self.backend):
            yield self.backend
            return
        with SimulatedOllamaServer(self.backend.sim) as server:
            # Ollama's documented preload: a chat with no messages loads the model only.
            try:
                httpx.post(
                    f"{server.url}/api/chat",
                    json={"model": self.backend.model, "messages": []},
                    timeout=self.backend.timeout_s,
                ).raise_for_status()
            except httpx.HTTPError as exc:
                raise RuntimeError(f"simulated server: the model preload failed: {exc}") from exc
            yield replace(self.backend, base_url=server.url)

    def endpoint_slots(self) -> list[ServerSlots]:
        """Each endpoint's slots, in the order listed (one entry without endpoints)."""
        self.server_slots()
        return list(self._endpoint_slots or [])

    def endpoint_statuses(self) -> list[tuple[str, ServerStatus]]:
        """(URL without credentials, status) of every endpoint, asked all at once."""
        members = self.backend.members()

        async def ask_all() -> list[ServerStatus]:
            return list(await asyncio.gather(*(_status_of(member) for member in members)))

        statuses: list[ServerStatus] = _run_sync(ask_all())
        return [(redact_url(m.url()), s) for m, s in zip(members, statuses, strict=True)]

    def endpoint_live(self) -> list[str | None]:
        """Each endpoint's live state where its server reports one (llama.cpp /slots,
        /metrics of llama.cpp or vLLM; engine/backends/live_state.py), asked all at once."""
        members = self.backend.members()

        async def ask_all() -> list[str | None]:
            return list(
                await asyncio.gather(*(live_state(m.started().url(), m.api_key) for m in members))
            )

        found: list[str | None] = _run_sync(ask_all())
        return found

    def server_status(self) -> ServerStatus:
        status: ServerStatus = _run_sync(_status_of(self.backend))
        return status


CompareProgress = Callable[[str, ProgressEvent], None]
CompareFinished = Callable[[str, AnalysisResult], None]


def _tagged(progress: CompareProgress | None, run: str) -> ProgressFn | None:
    """One run's progress callback, its events tagged with the run's name."""
    if progress is None:
        return None
    return lambda event: progress(run, event)


async def _status_of(config: BackendConfig) -> ServerStatus:
    backend = config.factory()
    try:
        return await backend.status()
    finally:
        await backend.aclose()
