"""Quorum against llama.cpp's own server and a real (tiny) model: SmolLM2-135M-Instruct.

A 135M model writes poor analyses and sometimes poor JSON: that must degrade one agent
with a clear status, never crash or hang the run. What is checked here is the engine's
side of a real server: its slots are read and respected, each request carries a token
cap, the server's own timings and token counts arrive, our client queue replaces the
server's, and the server's prefix cache behaves as the simulator models it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bench.llama_server import LlamaServer
from engine.backends.base import ChatRequest, ChatResult
from engine.backends.ollama import OllamaBackend
from engine.backends.openai_compat import OpenAICompatBackend
from engine.records import AgentRun, AnalysisResult
from engine.run.agents import DEFAULT_MODEL, DEFAULT_ROSTER, Roster
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import scenario

pytestmark = pytest.mark.realserver
CAP = DEFAULT_ROSTER.specialists[0].max_tokens or 0

MODEL = "smollm2"  # llama.cpp serves its one model under any name
TIMEOUT_S = 600.0  # generous: a busy 2-core CI machine; nothing here should come close


def engine(server: LlamaServer, roster: Roster = DEFAULT_ROSTER) -> Engine:
    return Engine(BackendConfig(kind="openai", base_url=server.url, model=MODEL), roster=roster)


def with_cap(roster: Roster, tokens: int) -> Roster:
    return Roster(
        tuple(replace(s, max_tokens=tokens) for s in roster.specialists),
        replace(roster.consolidator, max_tokens=min(tokens, 64)),
        replace(roster.generalist, max_tokens=tokens),
    )


def assert_clean(run: AgentRun) -> None:
    """Answered, or degraded with a one-line reason: never hung, never a crash."""
    assert run.status in ("ok", "error"), (run.name, run.status, run.error)
    if run.status == "error":
        assert run.error and "\n" not in run.error and "Traceback" not in run.error


@pytest.fixture(scope="module")
def parallel_5(llama5: LlamaServer) -> AnalysisResult:
    result = engine(llama5).analyze(
        scenario("cpu-saturation"), RunSettings(agent_timeout_s=TIMEOUT_S)
    )
    return result


def test_slots_are_read_from_the_server(llama5: LlamaServer, llama1: LlamaServer) -> None:
    five, one = engine(llama5).server_slots(), engine(llama1).server_slots()
    assert (five.slots, one.slots) == (5, 1)
    assert "llama.cpp /props" in five.source


def test_parallel_on_five_slots_every_agent_answers_or_degrades_cleanly(
    parallel_5: AnalysisResult,
) -> None:
    result = parallel_5
    assert result.server_slots == 5 and result.agents_total == 5
    for run in result.agents:
        assert_clean(run)
        # Every request left at once (five slots, five agents): no wait in our queue.
        assert run.client_queue_s is not None and run.client_queue_s < 0.5
        # What the server reported, not guessed: its token counts and timings.
        assert run.prompt_tokens and run.prompt_tokens > 100
        assert run.output_tokens and 0 < run.output_tokens <= CAP
        assert run.prefill_s is not None and run.decode_s is not None
        # llama.cpp reports no queue: Quorum's queue_s is the residual of the server's wall
        # (wall − prefill − decode). With five slots there is no slot to wait for, but a
        # slot waits for room in the shared batch while the others' prompts are evaluated;
        # on a 2-core CPU that can exceed its own work (6.1 s against 4.4 s was seen on
        # CI), so the check is the accounting, not a ratio that depends on the CPU.
        server_wall = run.duration_s - (run.client_queue_s or 0.0)
        assert run.queue_s is not None and run.queue_s >= 0.0
        assert abs(run.queue_s + run.work_s - server_wall) < 0.25 or run.queue_s == 0.0
    assert result.critical_path_source in ("server", "mixed")
    assert result.consolidation is not None


def test_the_consolidation_reuses_the_warmed_prefix(parallel_5: AnalysisResult) -> None:
    result = parallel_5
    consolidation = result.consolidation
    assert consolidation is not None
    if result.agents_participated < 2:
        pytest.skip("fewer than two agents wrote JSON: no LLM consolidation to measure")
    assert result.warmups, "a slot was free after the first answer: a warm-up was sent"
    assert all(w.status == "ok" for w in result.warmups), [w.error for w in result.warmups]
    assert consolidation.prompt_tokens and consolidation.cached_tokens is not None
    evaluated = consolidation.prompt_tokens - consolidation.cached_tokens
    # The bar is ≤ 25 % of a cold consolidation (the bench measures it); here,
    # with margin for a busy machine, at most half of its prompt was evaluated.
    assert evaluated <= 0.5 * consolidation.prompt_tokens


def test_one_slot_our_queue_replaces_the_servers(llama1: LlamaServer) -> None:
    # Short answers keep this quick; answers cut at the cap must degrade, not crash.
    roster = with_cap(DEFAULT_ROSTER, 160)
    result = engine(llama1, roster).analyze(
        scenario("memory-leak"), RunSettings(agent_timeout_s=TIMEOUT_S)
    )
    assert result.server_slots == 1
    runs = sorted(result.agents, key=lambda r: r.start_s + (r.client_queue_s or 0.0))
    for run in runs:
        assert_clean(run)
        if run.status == "error" and "not JSON" in (run.error or ""):
            assert "token cap" in (run.error or "") or run.output_tokens
        # Nobody waited at the server: the fifth agent did not wait for four others there.
        assert run.queue_s is not None and run.queue_s < 0.5 * max(run.work_s, 1.0)
    waits = [r.client_queue_s or 0.0 for r in runs]
    assert waits == sorted(waits) and waits[-1] > waits[0]  # one after another, in our queue
    # A timeout started at dispatch: nobody timed out for having waited.
    assert all(r.status != "timeout" for r in result.agents)


# --- the prefix cache, real and simulated --------------------------------------------------

SHARED = " ".join(
    f"Host {i} reports CPU utilisation of {40 + i % 50} percent and a run queue of "
    f"{i % 7} per core, with memory at {30 + i % 60} percent."
    for i in range(40)
)  # ≈ 3,300 characters: ≈ 800 tokens by the simulator's 4-characters rule
SUFFIXES = (
    " Question one: which resource saturates first, and what should be scaled?",
    " Question two: is there any sign of errors, and which would page someone?",
)


def prefill_only(user: str, model: str) -> ChatRequest:
    return ChatRequest(
        model=model, system="You are an SRE.", user=user, agent="prefix-check",
        schema=None, max_tokens=1, stream=False,
    )  # fmt: skip


async def cached_share(
    backend: OpenAICompatBackend | OllamaBackend, model: str, *, evaluated_only: bool
) -> float:
    """Send two prompts that share SHARED, one after the other; the second one's cached
    share of its prompt. `evaluated_only`: the server's prompt count excludes the cached
    part (Ollama's prompt_eval_count) rather than counting the whole prompt (usage)."""
    results: list[ChatResult] = []
    try:
        for suffix in SUFFIXES:
            results.append(await backend.chat(prefill_only(SHARED + suffix, model)))
    finally:
        await backend.aclose()
    second = results[1]
    assert second.prompt_tokens is not None and second.cached_tokens is not None
    total = second.prompt_tokens + (second.cached_tokens if evaluated_only else 0)
    return second.cached_tokens / total


def test_the_simulator_caches_prefixes_as_llama_cpp_does(llama1: LlamaServer) -> None:
    real = asyncio.run(cached_share(OpenAICompatBackend(llama1.url), MODEL, evaluated_only=False))
    with SimulatedOllamaServer(SimConfig(time_scale=0.001, num_parallel=1)) as sim:
        backend = OllamaBackend(sim.url, simulated=True)
        simulated = asyncio.run(cached_share(backend, DEFAULT_MODEL, evaluated_only=True))
    assert real > 0.8 and simulated > 0.8  # the shared prefix was reused, the rest evaluated
    assert abs(real - simulated) < 0.1, (real, simulated)


# --- the simulator's curve and the slot advice against the real server ---------------------

ANSWER_CAP = 64  # SmolLM2 writes more here: (nearly) every answer ends at the cap, on both
REAL = RunSettings(agent_timeout_s=TIMEOUT_S, grace_s=TIMEOUT_S)
SIM_SCALE = 0.25  # the simulator's walls are projected back (÷ this)


@pytest.fixture(scope="module")
def capped_runs(llama5: LlamaServer, llama1: LlamaServer) -> dict[str, AnalysisResult]:
    """One analysis, answers of a fixed length, on the real server: sequential and
    parallel on 5 slots, parallel on 1; then the same on the simulator's ci-smollm2."""
    roster = with_cap(DEFAULT_ROSTER, ANSWER_CAP)
    snap = scenario("cpu-saturation")
    # Both servers warmed the same way first (a server's first requests are slow, and the
    # slots then hold the shared prefix), as the simulator is below.
    engine(llama5, roster).analyze(snap, replace(REAL, mode="single"))
    engine(llama1, roster).analyze(snap, replace(REAL, mode="single"))
    runs = {
        "real_sequential": engine(llama5, roster).analyze(snap, replace(REAL, mode="sequential")),
        "real_parallel": engine(llama5, roster).analyze(snap, REAL),
        "real_one_slot": engine(llama1, roster).analyze(snap, REAL),
    }
    sim = SimConfig(profile="ci-smollm2", num_parallel=5, time_scale=SIM_SCALE, keep_alive_s=1e7)
    with SimulatedOllamaServer(sim) as server:
        config = BackendConfig(kind="simulated", base_url=server.url, sim=sim, model=MODEL)
        simulated = Engine(config, roster=roster)
        simulated.analyze(snap, replace(REAL, mode="single"))  # loads the model
        runs["sim_sequential"] = simulated.analyze(snap, replace(REAL, mode="sequential"))
        runs["sim_parallel"] = simulated.analyze(snap, REAL)
    return runs


# The two checks below are issue 15's targets, and are not met yet: on a quiet machine the
# real server's 5-slot parallel wall was 3.5 s where the ci-smollm2 curve predicts 8.3 s
# (and the advice 10.0 s). They are kept, runnable with `pytest -m calibration`, and left out
# of `make test` (pyproject.toml addopts) until the curve model matches the server.
CALIBRATION = pytest.mark.calibration


@CALIBRATION
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_the_simulator_s_walls_match_the_real_server_s(
    capped_runs: dict[str, AnalysisResult], mode: str
) -> None:
    real = capped_runs[f"real_{mode}"]
    simulated = capped_runs[f"sim_{mode}"]
    # The same work on both: SmolLM2 may end an answer early (EOS), rarely.
    written = sum(a.output_tokens or 0 for a in real.agents)
    assert written >= 0.9 * ANSWER_CAP * len(real.agents), [a.output_tokens for a in real.agents]
    projected = simulated.execution_time_s / SIM_SCALE
    assert projected == pytest.approx(real.execution_time_s, rel=0.15), (
        mode, projected, real.execution_time_s,
    )  # fmt: skip


@CALIBRATION
def test_advice_after_one_slot_comes_true_on_five(capped_runs: dict[str, AnalysisResult]) -> None:
    from engine.report.timeline import slot_advice

    advice = slot_advice(capped_runs["real_one_slot"])
    assert advice is not None and advice.agents == 5
    measured = capped_runs["real_parallel"].execution_time_s
    assert advice.estimated_s == pytest.approx(measured, rel=0.20), (
        advice.sentence(), measured,
    )  # fmt: skip
