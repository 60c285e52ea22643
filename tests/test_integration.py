"""The whole engine over real HTTP: Engine → runner → Ollama backend → simulated Ollama.

Small time scales keep this fast; timing assertions are ratios with generous margins,
because this runs on a noisy 2-core machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.records import AnalysisResult
from engine.report.timeline import result_chain
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import PROFILES, SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import scenario
from engine.store.disk import ResultCache
from tests.support.simulated import SPECIALISTS, simulated

REPO = Path(__file__).resolve().parent.parent


def analyze(
    backend: BackendConfig, settings: RunSettings, name: str = "cpu-saturation"
) -> AnalysisResult:
    return Engine(backend).analyze(scenario(name), settings)


def agents_phase(result: AnalysisResult) -> float:
    return max(a.end_s for a in result.agents) - min(a.start_s for a in result.agents)


def test_parallel_is_at_least_4x_faster_than_sequential_on_5_full_speed_slots() -> None:
    with simulated(slots=6, scale=0.1, share_compute=False) as (_, backend):
        analyze(backend, RunSettings(mode="single"))  # load the model first, as a warm server would
        sequential = analyze(backend, RunSettings(mode="sequential"))
        parallel = analyze(backend, RunSettings(mode="parallel", quorum=5))
    assert sequential.tier == parallel.tier == "excellent"
    assert agents_phase(sequential) / agents_phase(parallel) >= 4.0
    assert sum(a.queue_s or 0.0 for a in parallel.agents) < 0.1 * agents_phase(parallel)
    assert parallel.backend.simulated and parallel.simulated_profile == "gpu"


def test_on_slots_that_share_compute_the_speedup_is_the_servers_aggregate() -> None:
    # gpu: llama.cpp's published batched decode, ≈ 2.2× aggregate at 5 sequences.
    with simulated(slots=6, scale=0.1) as (_, backend):
        analyze(backend, RunSettings(mode="single"))
        sequential = analyze(backend, RunSettings(mode="sequential"))
        parallel = analyze(backend, RunSettings(mode="parallel", quorum=5))
    speedup = agents_phase(sequential) / agents_phase(parallel)
    aggregate = PROFILES["gpu"].curve.aggregate("decode", 5)
    assert 0.75 * aggregate < speedup < 1.25 * aggregate, (speedup, aggregate)


def test_one_slot_serialises_the_parallel_run_and_reports_the_queue() -> None:
    with simulated(slots=1, scale=0.05) as (_, backend):
        analyze(backend, RunSettings(mode="single"))
        sequential = analyze(backend, RunSettings(mode="sequential"))
        parallel = analyze(backend, RunSettings(mode="parallel", quorum=5))
    ratio = agents_phase(sequential) / agents_phase(parallel)
    assert 0.6 < ratio < 1.6  # no speedup: the server ran them one at a time
    assert parallel.server_slots == 1 and parallel.tier == "excellent"
    # Quorum held the queue itself: the waits are ours, measured, and the server's ~0.
    waits = sorted(a.client_queue_s or 0.0 for a in parallel.agents)
    work = statistics.median(a.work_s for a in parallel.agents)
    assert waits[-1] > 2 * work  # the last one waited for (about) four others
    assert sum(a.queue_s or 0.0 for a in parallel.agents) < 0.5 * work
    # One slot: the run waited for every agent in turn, so its critical path is the chain
    # of all five plus the consolidation (docs/contract.md), close to and never over the wall.
    chain = [r.name for r in result_chain(parallel)]
    assert set(chain) >= {a.name for a in parallel.agents}
    assert 0.6 * parallel.execution_time_s < parallel.critical_path_s <= parallel.execution_time_s


def test_hung_agent_is_cut_at_its_timeout_without_delaying_the_others() -> None:
    with simulated(faults={"SecurityAnalyst": "hang"}) as (_, backend):
        result = analyze(backend, RunSettings(quorum=5, agent_timeout_s=1.0))
        runs = {a.name: a for a in result.agents}
        assert runs["SecurityAnalyst"].status == "timeout"
        assert runs["SecurityAnalyst"].duration_s == pytest.approx(1.0, abs=0.5)
        assert all(
            r.status == "ok" and r.end_s < 0.9 for n, r in runs.items() if n != "SecurityAnalyst"
        )
        assert result.tier == "good" and result.missing_roles == ["security"]


def test_quorum_keeps_a_slow_straggler_that_is_on_course() -> None:
    # A peer that just waits would keep it: so does Quorum, when there is no deadline.
    with simulated(scale=0.02, faults={"CostOptimizer": "slow"}) as (_, backend):
        analyze(backend, RunSettings(mode="single"))
        result = analyze(backend, RunSettings(quorum=3, grace_s=0.0))
        runs = {a.name: a for a in result.agents}
        assert result.quorum_reached_s is not None
        assert runs["CostOptimizer"].status == "ok"
        assert runs["CostOptimizer"].end_s > result.quorum_reached_s
        assert result.tier == "excellent"


def test_quorum_cancels_a_straggler_that_cannot_make_the_deadline() -> None:
    with simulated(scale=0.05, faults={"CostOptimizer": "slow"}, share_compute=False) as (
        _,
        backend,
    ):
        analyze(backend, RunSettings(mode="single"))
        probe = analyze(backend, RunSettings(quorum=5, agent_timeout_s=30))
        fast = max(a.end_s for a in probe.agents if a.name != "CostOptimizer")
        slow = next(a.end_s for a in probe.agents if a.name == "CostOptimizer")
        assert slow > 2.2 * fast  # the fault makes it about 3× slower
        # A deadline the fast agents meet with room to spare, and the slow one cannot.
        deadline = 2 * fast
        result = analyze(backend, RunSettings(quorum=3, grace_s=0.0, deadline_s=deadline))
        runs = {a.name: a for a in result.agents}
        assert runs["CostOptimizer"].status == "cancelled"
        assert "deadline" in (runs["CostOptimizer"].error or "")
        assert runs["CostOptimizer"].output_tokens  # what it streamed is kept
        assert result.tier == "good"


def test_quorum_cancels_a_hung_straggler_before_its_timeout() -> None:
    with simulated(scale=0.02, faults={"CostOptimizer": "hang"}) as (_, backend):
        analyze(backend, RunSettings(mode="single"))
        result = analyze(backend, RunSettings(quorum=3, grace_s=0.1, agent_timeout_s=30))
        runs = {a.name: a for a in result.agents}
        assert runs["CostOptimizer"].status == "cancelled"
        assert "hung" in (runs["CostOptimizer"].error or "")
        assert runs["CostOptimizer"].end_s < 5  # far from its 30 s timeout
        assert result.tier == "good"


def test_one_slot_and_default_settings_keep_every_agent() -> None:
    # The bar: Ollama's default of one slot, the defaults scaled to the profile
    # (time scale 0.05: 30 s timeout → 1.5 s, 2 s grace → 0.1 s): all five answer.
    with simulated(slots=1, scale=0.05, profile="baseline") as (_, backend):
        result = analyze(backend, RunSettings(agent_timeout_s=1.5, grace_s=0.1))
    assert [a.status for a in result.agents] == ["ok"] * 5
    assert result.tier == "excellent"
    assert result.server_slots == 1


@pytest.mark.parametrize(
    ("failing", "tier", "confidence"),
    [(0, "excellent", 95), (1, "good", 88), (2, "good", 88), (3, "basic", 80), (4, "fallback", 60)],
)
def test_every_tier(failing: int, tier: str, confidence: int) -> None:
    faults = {name: "error" for name in SPECIALISTS[:failing]}
    with simulated(faults=faults) as (_, backend):
        result = analyze(backend, RunSettings(quorum=1, grace_s=5))
    assert (result.tier, result.confidence) == (tier, confidence)
    assert result.agents_participated == 5 - failing
    assert len(result.missing_roles) == failing
    assert all("simulated internal error" in (a.error or "") for a in result.agents[:failing])
    assert result.consolidation is not None
    assert result.consolidation.method == ("llm" if 5 - failing >= 2 else "fallback")


def test_single_tier() -> None:
    with simulated() as (_, backend):
        result = analyze(backend, RunSettings(mode="single"))
    assert (result.tier, result.confidence, result.agents_total) == ("single", 85, 1)


@pytest.mark.parametrize("fault", ["error-midstream", "malformed", "busy", "notfound"])
def test_a_failing_backend_degrades_one_agent(fault: str) -> None:
    with simulated(faults={"InfrastructureExpert": fault}) as (_, backend):
        result = analyze(backend, RunSettings(quorum=5))
    runs = {a.name: a for a in result.agents}
    assert runs["InfrastructureExpert"].status == "error"
    assert runs["InfrastructureExpert"].error
    assert sum(r.status == "ok" for r in runs.values()) == 4


def test_fallback_merge_when_the_consolidator_fails() -> None:
    with simulated(faults={"Consolidator": "error"}) as (_, backend):
        result = analyze(backend, RunSettings(quorum=5))
    assert result.consolidation is not None and result.consolidation.method == "fallback"
    assert result.tier == "excellent"
    cpu = next(i for i in result.insights if "cpu_util_pct" in i.metrics)
    assert cpu.severity == "CRITICAL" and len(cpu.agents) >= 3
    assert "deterministic merge" in result.collaboration_summary


def test_server_timings_are_reported_per_agent() -> None:
    with simulated() as (_, backend):
        result = analyze(backend, RunSettings(quorum=5))
    for run in [*result.agents, result.consolidation]:
        assert run is not None
        assert run.status == "ok"
        assert run.prompt_tokens and run.output_tokens and run.response_chars > 0
        assert run.decode_s is not None and run.decode_s > 0
        assert run.prefill_s is not None and run.load_s is not None and run.queue_s is not None
        assert run.ttft_s is not None and run.ttft_s <= run.duration_s


def test_cache_hit_is_served_in_under_10_ms(tmp_path: Path) -> None:
    with simulated() as (_, backend):
        engine = Engine(backend, cache=ResultCache(tmp_path))
        first = engine.analyze(scenario("memory-leak"), RunSettings())
        hits = [engine.analyze(scenario("memory-leak"), RunSettings()) for _ in range(20)]
    assert not first.cache.hit
    assert all(h.cache.hit and h.cache.age_s is not None for h in hits)
    assert statistics.median(h.execution_time_s for h in hits) < 0.010
    assert hits[0].insights == first.insights and hits[0].agents == first.agents


def test_different_settings_do_not_share_a_cache_entry(tmp_path: Path) -> None:
    with simulated() as (_, backend):
        engine = Engine(backend, cache=ResultCache(tmp_path))
        engine.analyze(scenario("healthy"), RunSettings())
        other = engine.analyze(scenario("healthy"), RunSettings(mode="sequential"))
        refreshed = engine.analyze(scenario("healthy"), RunSettings(), refresh=True)
    assert not other.cache.hit and not refreshed.cache.hit


def test_20_concurrent_identical_requests_cause_one_fan_out(tmp_path: Path) -> None:
    """10 threads, 5 asyncio tasks and 5 separate processes ask at once; one run answers all."""
    with simulated(scale=0.05) as (server, backend):
        engine = Engine(backend, cache=ResultCache(tmp_path))
        snap = scenario("error-spike")
        script = (
            "import json, sys\n"
            "from engine.store.disk import ResultCache\n"
            "from engine.run.runner import RunSettings\n"
            "from engine.service import BackendConfig, Engine\n"
            "from engine.simulator import SimConfig\n"
            "from engine.sources.snapshot import scenario\n"
            "sys.stdin.readline()\n"  # the start signal
            f"sim = SimConfig(profile='gpu', num_parallel=6, time_scale=0.05)\n"
            f"b = BackendConfig(kind='simulated', base_url={server.url!r}, sim=sim)\n"
            f"e = Engine(b, cache=ResultCache({str(tmp_path)!r}))\n"
            "r = e.analyze(scenario('error-spike'), RunSettings())\n"
            "print(json.dumps({'hit': r.cache.hit, 'tier': r.tier}))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=env, text=True,
            )
            for _ in range(5)
        ]  # fmt: skip
        barrier = threading.Barrier(11)

        def in_thread() -> AnalysisResult:
            barrier.wait()
            return engine.analyze(snap, RunSettings())

        async def in_tasks() -> list[AnalysisResult]:
            barrier.wait()
            calls = [asyncio.to_thread(engine.analyze, snap, RunSettings()) for _ in range(5)]
            return list(await asyncio.gather(*calls))

        with concurrent.futures.ThreadPoolExecutor(max_workers=11) as pool:
            thread_results = [pool.submit(in_thread) for _ in range(10)]
            task_results = pool.submit(asyncio.run, in_tasks())
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = [f.result(timeout=60) for f in thread_results] + task_results.result(
                timeout=60
            )
        outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
        stats = server.stats.snapshot()
    assert all(p.returncode == 0 for p in procs)
    assert len(results) + len(outputs) == 20
    # Exactly one fan-out: each agent and the consolidator asked once in all.
    assert stats.answers_by_agent() == {name: 1 for name in [*SPECIALISTS, "Consolidator"]}
    hits = sum(r.cache.hit for r in results) + sum(o["hit"] for o in outputs)
    assert hits == 19
    assert {r.tier for r in results} | {o["tier"] for o in outputs} == {"excellent"}


def test_unreachable_server_degrades_every_agent_not_the_process(tmp_path: Path) -> None:
    config = SimConfig(time_scale=0.01)
    with SimulatedOllamaServer(config) as server:
        url = server.url
    backend = BackendConfig(kind="ollama", base_url=url)  # nothing listens there any more
    result = Engine(backend).analyze(scenario("cpu-saturation"), RunSettings(agent_timeout_s=5))
    assert result.status == "error"
    assert {a.status for a in result.agents} == {"error"}
    assert result.error is not None and "cannot reach" in result.error.lower()
    assert result.insights and result.tier == "fallback"


def test_concurrent_callers_share_one_run_even_without_a_cache() -> None:
    with simulated(scale=0.05) as (server, backend):
        engine = Engine(backend)
        barrier = threading.Barrier(8)

        def caller() -> AnalysisResult:
            barrier.wait()
            return engine.analyze(scenario("healthy"), RunSettings())

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: caller(), range(8)))
        stats = server.stats.snapshot()
    assert stats.answers_by_agent() == {name: 1 for name in [*SPECIALISTS, "Consolidator"]}
    assert sum(not r.cache.hit for r in results) == 1
    assert len({id(r) for r in results}) == 8  # every caller gets its own copy


def test_the_pool_is_sized_to_the_fan_out() -> None:
    from dataclasses import replace

    from engine.run.agents import DEFAULT_ROSTER

    many = tuple(
        replace(spec, name=f"{spec.name}{i}")
        for i in range(4)
        for spec in DEFAULT_ROSTER.specialists
    )  # 20 agents, more than httpx's usual pool
    with simulated(slots=21, scale=0.1) as (server, backend):
        engine = Engine(backend, roster=replace(DEFAULT_ROSTER, specialists=many))
        result = engine.analyze(scenario("healthy"), RunSettings(quorum=20))
        stats = server.stats.snapshot()
    assert result.agents_participated == 20
    assert stats.max_in_flight > 16  # httpx's default pool would have capped it there


def test_one_slot_and_a_hung_agent_it_ends_at_its_timeout_and_the_others_answer() -> None:
    # The hung agent holds the only slot until its timeout; the others wait in Quorum's
    # queue (their timeouts start when sent), then all answer.
    with simulated(slots=1, scale=0.02, faults={"PerformanceAnalyst": "hang"}) as (_, backend):
        result = analyze(backend, RunSettings(agent_timeout_s=0.6, grace_s=0.04))
    runs = {a.name: a for a in result.agents}
    hung = runs["PerformanceAnalyst"]
    assert hung.status == "timeout" and hung.duration_s == pytest.approx(0.6, abs=0.3)
    others = [r for n, r in runs.items() if n != "PerformanceAnalyst"]
    assert all(r.status == "ok" for r in others)
    assert all((r.client_queue_s or 0.0) >= 0.5 for r in others)  # they waited their turn
    assert result.tier == "good" and result.agents_participated == 4


def test_consolidation_variants_each_get_a_fresh_embedded_server() -> None:
    from engine.service import isolates_variants
    from engine.simulator import shared_server

    # A slot per agent, so no agent can find another one's prefix within its own run.
    config = SimConfig(profile="gpu", num_parallel=6, time_scale=0.01)
    embedded = BackendConfig(kind="simulated", sim=config)
    assert isolates_variants(embedded)
    shared = shared_server(config).url
    runs = Engine(embedded).compare_consolidation(scenario("cpu-saturation"), RunSettings())
    assert list(runs) == ["full_cold", "compact_cold", "compact_warm"]
    urls = [r.backend.url for r in runs.values()]
    assert len(set(urls)) == 3 and shared not in urls  # a server of its own, each
    # Empty slots: no agent finds its prompt cached. On one shared server every variant
    # after the first would find the previous variant's agent prompts in the slots.
    for name, run in runs.items():
        assert [a.cached_tokens for a in run.agents] == [0] * 5, name
    with simulated() as (_, external):
        assert not isolates_variants(external)  # a server we did not start keeps its KV
    assert not isolates_variants(BackendConfig(kind="ollama"))


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("slots", [1, 2, 6])
def test_the_critical_path_never_exceeds_the_wall(slots: int, overlap: bool) -> None:
    """With warm-ups (their settled tail counts on the path), one slot or several, and with
    the consolidation overlapping late agents: the chain the run waited for fits in its wall."""
    backend = BackendConfig(sim=SimConfig(num_parallel=slots, time_scale=0.02, seed=slots))
    for name in ("cpu-saturation", "memory-leak"):
        result = Engine(backend).analyze(
            scenario(name), RunSettings(overlap=overlap, agent_timeout_s=30.0)
        )
        assert result.agents_participated >= 3, [a.error for a in result.agents]  # the quorum
        assert 0 < result.critical_path_s <= result.execution_time_s, (name, slots, overlap)
