"""P4: 50 callers ask for the same snapshot at once; one fan-out must serve them all.

Two set-ups, each starting from an empty cache on every repeat:
- threads: 50 threads share one Engine (the dashboard shares one per process);
- processes: the 50 callers spread over several spawned processes, each with its own
  Engine on the same cache directory and the same simulated server URL.
Callers are started first and blocked on one gate (an Event); the gate opens once all
are there, and each caller measures its own wall from the moment it passes it. Fan-outs
are counted at the server: one analysis is 6 chat requests. CLOCK_MONOTONIC is
system-wide on Linux, so `time.monotonic()` stamps from different processes compare
(used only for the breakdown).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.levels import Level
from bench.measure import Row, Target, check
from bench.sim import engine_for, running, sim_config, snapshot, warm_process
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import Snapshot
from engine.store.disk import ResultCache

CALLERS = 50
CHAT_PER_ANALYSIS = 6  # five specialists and the consolidator
SLACK_MS = 50.0
_JOIN_S = 120.0


class _Gate(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Answer:
    wall_s: float
    start_mono: float
    end_mono: float
    hit: bool
    critical_path_s: float
    ok: bool


def _run_callers(
    engine: Engine, snap: Snapshot, n: int, go: _Gate, at_gate: Callable[[], object]
) -> list[Answer]:
    """Start `n` caller threads blocked on `go`, call `at_gate` (which must lead to `go`
    opening), and return every caller's answer."""
    out: list[Answer] = []
    lock = threading.Lock()
    settings = RunSettings()

    def call() -> None:
        go.wait()
        start_mono, started = time.monotonic(), time.perf_counter()
        result = engine.analyze(snap, settings)
        wall = time.perf_counter() - started
        answer = Answer(
            wall,
            start_mono,
            time.monotonic(),
            result.cache.hit,
            result.critical_path_s,
            result.status == "success",
        )
        with lock:
            out.append(answer)

    threads = [threading.Thread(target=call, name=f"caller-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    at_gate()
    for thread in threads:
        thread.join(_JOIN_S)
    return out


def _process_main(
    url: str, config: SimConfig, cache_dir: str, snap: Snapshot, n: int,
    ready: Any, go: Any, results: Any,
) -> None:  # fmt: skip
    """A spawned caller process: its own Engine on the shared cache dir and server URL."""
    warm_process()  # its first-use costs on a throw-away server, before the gate
    backend = BackendConfig(kind="simulated", base_url=url, sim=config)
    engine = Engine(backend, cache=ResultCache(cache_dir))
    results.put(_run_callers(engine, snap, n, go, ready.wait))


@dataclass
class _Repeat:
    answers: list[Answer]
    chat_requests: int
    go_mono: float


def _with_threads(server: SimulatedOllamaServer, cache_dir: Path, snap: Snapshot) -> _Repeat:
    engine = engine_for(server, cache=ResultCache(cache_dir))
    go = threading.Event()
    opened: list[float] = []

    def open_gate() -> None:
        server.stats.reset()
        opened.append(time.monotonic())
        go.set()

    answers = _run_callers(engine, snap, CALLERS, go, open_gate)
    return _Repeat(answers, sum(server.stats.snapshot().answers_by_agent().values()), opened[0])


def _with_processes(
    server: SimulatedOllamaServer, cache_dir: Path, snap: Snapshot, processes: int
) -> _Repeat:
    ctx = mp.get_context("spawn")  # fork would copy the server's threads into children
    ready, go, results = ctx.Barrier(processes + 1), ctx.Event(), ctx.Queue()
    shares = [CALLERS // processes + (i < CALLERS % processes) for i in range(processes)]
    procs = [
        ctx.Process(
            target=_process_main,
            args=(server.url, server.config, str(cache_dir), snap, k, ready, go, results),
            name=f"p4-callers-{i}",
        )
        for i, k in enumerate(shares)
    ]
    for proc in procs:
        proc.start()
    try:
        ready.wait(_JOIN_S)
        server.stats.reset()
        go_mono = time.monotonic()
        go.set()
        answers = [a for _ in procs for a in results.get(timeout=_JOIN_S)]
    finally:
        for proc in procs:
            proc.join(_JOIN_S)
    return _Repeat(answers, sum(server.stats.snapshot().answers_by_agent().values()), go_mono)


def _fresh_thread_reads(cache_dir: Path) -> tuple[float, float]:
    """(slowest, median) ms of the first `ResultCache.get` in each of 50 fresh threads
    released together: diskcache opens one SQLite connection per thread."""
    cache = ResultCache(cache_dir)
    cache.set("key", {"answer": 42})
    gate = threading.Barrier(CALLERS)
    took: list[float] = []

    def read() -> None:
        gate.wait()
        started = time.perf_counter()
        cache.get("key")
        took.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=read) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(_JOIN_S)
    cache.close()
    return max(took), statistics.median(took)


def run(level: Level) -> Row:
    warm_process()
    scale, processes = level.p4_scale, level.p4_processes
    variants = ("threads", f"{processes} processes")
    repeats: dict[str, list[_Repeat]] = {v: [] for v in variants}
    reads: list[tuple[float, float]] = []
    with running(sim_config(scale=scale)) as server, tempfile.TemporaryDirectory() as tmp:
        for r in range(level.p4_repeats):
            reads.append(_fresh_thread_reads(Path(tmp) / f"reads{r}"))
            for v in variants:  # a distinct snapshot and an empty cache every time
                snap = snapshot(variant=1000 + 2 * r + (v != "threads"))
                where = Path(tmp) / f"{v[0]}{r}"
                if v == "threads":
                    repeats[v].append(_with_threads(server, where, snap))
                else:
                    repeats[v].append(_with_processes(server, where, snap, processes))
    row = Row(
        "P4",
        f"{CALLERS} concurrent callers on one snapshot, one cache dir, one server",
        f"exactly 1 fan-out ({CHAT_PER_ANALYSIS} chat requests); every caller answered "
        f"≤ critical path + {SLACK_MS:g} ms",
        {
            "profile": "baseline",
            "time_scale": scale,
            "slots": 6,
            "callers": CALLERS,
            "processes": processes,
            "repeats": level.p4_repeats,
            "settings": "RunSettings() defaults",
        },
    )
    for v in variants:
        runs = repeats[v]
        over = [max(a.wall_s - a.critical_path_s for a in rep.answers) * 1000 for rep in runs]
        row.checks += [
            check(
                f"{v}: chat requests at the server",
                [float(rep.chat_requests) for rep in runs],
                "",
                Target("==", CHAT_PER_ANALYSIS),
                judge="max",
            ),
            check(
                f"{v}: slowest caller's wall − critical path",
                over,
                "ms",
                Target("<=", SLACK_MS),
                judge="max",
                note="every caller of every repeat",
            ),
            check(
                f"{v}: callers answered (successfully)",
                [float(sum(a.ok for a in rep.answers)) for rep in runs],
                f"of {CALLERS}",
                Target("==", CALLERS),
                judge="min",
            ),
            *_breakdown(v, runs),
        ]
    row.checks += [
        check(f"{CALLERS} fresh threads' first ResultCache.get: slowest", [r[0] for r in reads],
              "ms", binding=False, note="one SQLite connection opened per thread"),
        check(f"{CALLERS} fresh threads' first ResultCache.get: median", [r[1] for r in reads],
              "ms", binding=False),
    ]  # fmt: skip
    return row


def _breakdown(variant: str, runs: list[_Repeat]) -> list[Any]:
    """Where the slack goes: before the one run starts, inside it, and after it."""
    flight, tail, skew, median_over = [], [], [], []
    for rep in runs:
        runner = next((a for a in rep.answers if not a.hit), None)
        if runner is None:
            continue
        flight.append((runner.wall_s - runner.critical_path_s) * 1000)
        tail.append((max(a.end_mono for a in rep.answers) - runner.end_mono) * 1000)
        skew.append((max(a.start_mono for a in rep.answers) - rep.go_mono) * 1000)
        median_over.append(
            statistics.median(a.wall_s - a.critical_path_s for a in rep.answers) * 1000
        )
    if not flight:
        return []
    return [
        check(f"{variant}: the caller that ran it: wall − critical path", flight, "ms",
              binding=False, note="start behind the other callers, the run's overhead, the store"),
        check(f"{variant}: last answer after the run's own answer", tail, "ms", binding=False,
              note="the other callers are answered one after another"),
        check(f"{variant}: median caller's wall − critical path", median_over, "ms",
              binding=False),
        check(f"{variant}: start-gate skew (last caller through the gate)", skew, "ms",
              binding=False),
    ]  # fmt: skip
