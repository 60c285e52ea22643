"""Learning the slots of a server that does not report them (engine/backends/slot_probe.py),
against the simulated Ollama on real loopback HTTP: it picks its slots as Ollama does and
says nothing about them, so only the probe can find them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from engine.backends.base import ChatResult
from engine.backends.slot_probe import (
    Judgement,
    LearnedSlots,
    contradicted,
    free_slots,
    learn_slots,
    most_at_once,
)
from engine.records import AgentRun
from engine.report.timeline import PROBE_LABEL, timeline
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import VERSION, SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import scenario
from engine.store.disk import ResultCache
from engine.store.state import ProcessSlotMemory

MODEL = "llama3.1:8b"
SETTINGS = RunSettings(agent_timeout_s=20, grace_s=20)


def sim(**overrides: object) -> SimulatedOllamaServer:
    config = SimConfig(**{"time_scale": 0.05, "keep_alive_s": 1e7, **overrides})  # type: ignore[arg-type]
    server = SimulatedOllamaServer(config).start()
    httpx.post(f"{server.url}/api/chat", json={"model": MODEL, "messages": []}, timeout=30)
    return server


def test_the_simulated_ollama_picks_its_slots_as_ollama_does() -> None:
    assert SimConfig().slots == 4 and SimConfig(fits_in_memory=False).slots == 1
    assert SimConfig(num_parallel=2, fits_in_memory=False).slots == 2
    with SimulatedOllamaServer(SimConfig()) as server:
        assert httpx.get(f"{server.url}/props").status_code == 404  # Ollama says nothing
    with SimulatedOllamaServer(SimConfig(num_parallel=3, llama_props=True)) as server:
        props = httpx.get(f"{server.url}/props").json()
        slots = httpx.get(f"{server.url}/slots").json()
    assert props["total_slots"] == 3 and [s["is_processing"] for s in slots] == [False] * 3


@pytest.mark.parametrize(
    ("slots", "learned", "at_least"), [(1, 1, False), (4, 4, False), (8, 5, True)]
)
async def test_the_probe_learns_the_servers_slots(slots: int, learned: int, at_least: bool) -> None:
    server = sim(num_parallel=slots)
    try:
        start = time.perf_counter()
        found, runs = await learn_slots(server.url, MODEL, lambda: time.perf_counter() - start)
    finally:
        server.stop()
    assert found is not None and (found.slots, found.at_least) == (learned, at_least)
    assert found.how == "probe" and found.source().startswith(
        f"learned: {'≥ ' if at_least else ''}{learned} (probe at "
    )
    assert all(r.status == "ok" and r.end_s >= r.start_s for r in runs)
    # Waves of 2, then 5, then (if the 5 did not overlap at the server) 5 longer ones.
    assert len(runs) in (2, 7, 12) and (slots > 1 or len(runs) < 12)


def test_first_run_on_a_default_ollama_learns_4_slots_then_remembers(tmp_path: Path) -> None:
    server = sim()  # Ollama's default where the model fits: 4, unreported
    try:
        backend = BackendConfig(kind="ollama", base_url=server.url, model=MODEL)
        cache = ResultCache(tmp_path / "cache")
        first = Engine(backend, cache=cache).analyze(scenario("cpu-saturation"), SETTINGS)
        assert first.server_slots == 4 and first.server_slots_source.startswith(
            "learned: 4 (probe at"
        )
        assert first.agents_participated == 5 and first.tier == "excellent"
        rows = timeline(first).rows
        probes = [r for r in rows if r.probe]
        assert probes and probes[0].label == f"{PROBE_LABEL} 1" and rows[0].probe
        # The agents start after the probe, and no agent waited at the server.
        assert (
            min(a.start_s for a in first.agents) >= max(p.end_s for p in first.slot_probes) - 1e-3
        )
        assert all((a.queue_s or 0) < 0.05 for a in first.agents)
        # Another engine on the same cache: remembered, no probe.
        again = Engine(backend, cache=cache).analyze(scenario("memory-leak"), SETTINGS)
        assert again.slot_probes == [] and again.server_slots == 4
        assert again.server_slots_source.startswith("learned: 4 (probe at")
        # The probe's requests are counted apart from the answers (as warm-ups are).
        probed = [a for a in server.stats.chat_by_agent if a.endswith(".probe")]
        assert len(probed) == len(first.slot_probes)
        assert not set(probed) & set(server.stats.answers_by_agent())
    finally:
        server.stop()


def test_configured_slots_and_llama_props_win_over_learning() -> None:
    server = sim(llama_props=True, num_parallel=2)
    try:
        backend = BackendConfig(kind="ollama", base_url=server.url, model=MODEL)
        result = Engine(backend).analyze(scenario("cpu-saturation"), SETTINGS)
        assert (result.server_slots, result.slot_probes) == (2, [])
        assert "llama.cpp /props" in result.server_slots_source
        configured = Engine(BackendConfig(kind="ollama", base_url=server.url, server_slots=5))
        result = configured.analyze(scenario("cpu-saturation"), SETTINGS)
        assert (result.server_slots, result.slot_probes) == (5, [])
    finally:
        server.stop()


def test_a_run_that_contradicts_the_learned_slots_replaces_them() -> None:
    server = sim(num_parallel=1)
    try:
        backend = BackendConfig(kind="ollama", base_url=server.url, model=MODEL)
        memory = ProcessSlotMemory()
        key = f"{server.url}|{MODEL}"
        # Learned before the server was restarted with one slot (same version).
        stale = LearnedSlots(4, "probe", time.time() - 3600, server=f"ollama {VERSION}")
        memory.remember(key, stale.to_dict(), 3600)
        result = Engine(backend, slot_memory=memory).analyze(scenario("cpu-saturation"), SETTINGS)
        assert result.server_slots == 4 and result.slot_probes == []
        record = memory.recall(key)
        assert record is not None
        relearned = LearnedSlots.from_dict(record)
        assert (relearned.slots, relearned.how) == (1, "run")
        assert relearned.source().startswith("learned: 1 (the timings of a run at")
        after = Engine(backend, slot_memory=memory).analyze(scenario("memory-leak"), SETTINGS)
        assert after.server_slots == 1 and all((a.queue_s or 0) < 0.05 for a in after.agents)
    finally:
        server.stop()


def _run(client_queue_s: float, queue_s: float, work_s: float = 1.0) -> AgentRun:
    return AgentRun("A", "r", "m", client_queue_s=client_queue_s, queue_s=queue_s,
                    prefill_s=0.1 * work_s, decode_s=0.9 * work_s)  # fmt: skip


def test_contradiction_and_judgement_are_pure() -> None:
    agreeing = [_run(0, 0), _run(0, 0.01), _run(0, 0), _run(0, 0), _run(1.0, 0)]
    assert contradicted(4, agreeing) is None
    queued = [_run(0, 0), _run(0, 1.0), _run(0, 2.0), _run(0, 3.0)]
    found = contradicted(4, queued)
    assert found is not None and (found.slots, found.how) == (1, "run")
    assert contradicted(4, [_run(0, 0)]) is None  # one request says nothing about slots
    results = [ChatResult("x", queue_s=q, prefill_s=0.01, decode_s=0.09) for q in (0, 0, 0.1, 0.1)]
    # Two worked at once, then the two that had waited: the server has 2 slots.
    assert free_slots(results, [0.1, 0.1, 0.2, 0.2]) == Judgement(2, queued=True)
    stamped = [
        ChatResult("x", queue_s=0, prefill_s=0.01, decode_s=0.09, raw_final={"created_at": at})
        for at in ("2026-01-01T00:00:00.1Z", "2026-01-01T00:00:00.150000001Z")
    ]
    assert free_slots(stamped, [9.0, 0.0]) == Judgement(2, queued=False)  # the server's clock
    assert most_at_once([(0, 1), (1, 2)]) == 1 and most_at_once([(0, 2), (1, 3), (1.5, 4)]) == 3
    assert free_slots([ChatResult("x")]) is None  # no server timings: no judgement
    with pytest.raises(ValueError, match="learned slots"):
        LearnedSlots.from_dict({"slots": 0, "how": "probe"})
