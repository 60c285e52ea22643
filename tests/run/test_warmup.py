"""Warm-ups against the simulated Ollama over real HTTP: a consolidation whose prompt was
prefilled while the agents arrived prefills only the last agent's part."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from engine.backends.base import ChatRequest, ChatResult
from engine.backends.ollama import OllamaBackend
from engine.run import agents, use_method
from engine.run.agents import DEFAULT_ROSTER, AgentSpec
from engine.run.runner import RunSettings, run_analysis
from engine.run.slots import ServerSlots
from engine.run.warmup import WARMUP_SUFFIX, warm_consolidator, warmup_request
from engine.simulator import SimConfig, SimulatedOllamaServer, estimate_tokens
from engine.sources.snapshot import scenario
from tests.support.fakes import FakeBackend, Script

MODEL = "llama3.1:8b"
CPU = scenario("cpu-saturation").quantised()
ROSTER = DEFAULT_ROSTER.with_default_model(MODEL)
CONSOLIDATOR = ROSTER.consolidator
ARRIVED = [(a.name, a.role, use_method.agent_answer(CPU, a.role)) for a in ROSTER.specialists]


@pytest.fixture
def server() -> Iterator[SimulatedOllamaServer]:
    with SimulatedOllamaServer(SimConfig(time_scale=0.001)) as running:
        yield running


def request(spec: AgentSpec, user: str) -> ChatRequest:
    return ChatRequest(model=MODEL, system=spec.system_prompt, user=user, agent=spec.name)


def final_prompt() -> str:
    findings = use_method.compact_findings(ARRIVED)
    return agents.consolidation_user_prompt(CPU, findings, CONSOLIDATOR.instructions)


async def consolidate(backend: OllamaBackend) -> ChatResult:
    return await backend.chat(request(CONSOLIDATOR, final_prompt()))


async def test_warmed_consolidation_prefills_only_the_last_agents_findings(
    server: SimulatedOllamaServer,
) -> None:
    backend = OllamaBackend(server.url, simulated=True)
    try:
        # The agents run first and leave the snapshot's prefix in their slots.
        await asyncio.gather(
            *(
                backend.chat(request(a, agents.agent_user_prompt(a.role, CPU, a.instructions)))
                for a in ROSTER.specialists
            )
        )
        warmups = [
            await warm_consolidator(backend, CONSOLIDATOR, CPU, ARRIVED[:n], timeout_s=10)
            for n in range(1, len(ARRIVED))  # after each agent but the last
        ]
        warm = await consolidate(backend)
    finally:
        await backend.aclose()

    assert all(w.ok and w.evaluated_tokens and w.cached_tokens for w in warmups)
    for before, after in itertools.pairwise(warmups):
        assert before.evaluated_tokens is not None and before.cached_tokens is not None
        assert after.cached_tokens is not None
        # Each warm-up reuses everything the one before it read.
        assert after.cached_tokens >= before.cached_tokens + before.evaluated_tokens - 1
    # What is left: the last agent's lines and the block's close.
    last = use_method.compact_findings(ARRIVED[:-1])
    tail = final_prompt().removeprefix(agents.consolidation_prefix(CPU, last))
    assert warm.prompt_tokens is not None and warm.cached_tokens is not None
    assert abs(warm.prompt_tokens - len(tail) / 4) <= 2
    total = estimate_tokens(CONSOLIDATOR.system_prompt + final_prompt())
    assert warm.prompt_tokens + warm.cached_tokens == total

    # A cold consolidation on a fresh server reads the whole prompt.
    with SimulatedOllamaServer(SimConfig(time_scale=0.001)) as fresh:
        cold_backend = OllamaBackend(fresh.url, simulated=True)
        try:
            cold = await consolidate(cold_backend)
        finally:
            await cold_backend.aclose()
    assert (cold.prompt_tokens, cold.cached_tokens) == (total, 0)
    assert cold.prompt_tokens is not None
    assert warm.prompt_tokens <= 0.25 * cold.prompt_tokens  # issue 8's target


async def test_a_warmup_is_one_token_of_the_growing_prompt() -> None:
    fake = FakeBackend()
    result = await warm_consolidator(fake, CONSOLIDATOR, CPU, ARRIVED[:2], timeout_s=5)
    assert result.ok
    sent = fake.requests[0]
    assert (sent.max_tokens, sent.stream, sent.schema) == (1, False, None)
    assert sent.agent == "Consolidator" + WARMUP_SUFFIX
    assert sent.system == CONSOLIDATOR.system_prompt
    assert final_prompt().startswith(sent.user) and len(sent.user) < len(final_prompt())
    assert warmup_request(CONSOLIDATOR, "x").model == MODEL


@pytest.mark.parametrize(
    ("fault", "error"),
    # A 503 is retried within the timeout (engine/backends/streaming.py): it then times out.
    [("error", "500"), ("busy", "no answer in 0.3 s"), ("hang", "no answer in 0.3 s")],
)
async def test_a_failed_warmup_is_reported_not_raised(
    server: SimulatedOllamaServer, fault: str, error: str
) -> None:
    server.set_fault("Consolidator" + WARMUP_SUFFIX, fault)
    backend = OllamaBackend(server.url, simulated=True)
    try:
        result = await warm_consolidator(backend, CONSOLIDATOR, CPU, ARRIVED[:1], timeout_s=0.3)
        after = await consolidate(backend)  # the consolidation itself is unaffected
    finally:
        await backend.aclose()
    assert not result.ok and result.error is not None and error in result.error
    assert result.to_dict()["evaluated_tokens"] is None
    assert after.content and after.prompt_tokens


async def test_fake_warmup_failure_is_reported() -> None:
    fake = FakeBackend({"Consolidator" + WARMUP_SUFFIX: Script(error="boom")})
    result = await warm_consolidator(fake, CONSOLIDATOR, CPU, ARRIVED, timeout_s=5)
    assert result.error == "boom" and result.duration_s >= 0


async def test_records_carry_evaluated_and_cached_prompt_tokens(
    server: SimulatedOllamaServer,
) -> None:
    def backend() -> OllamaBackend:
        return OllamaBackend(server.url, simulated=True)

    settings = RunSettings(quorum=5)
    snap = scenario("cpu-saturation")
    first = await run_analysis(snap, DEFAULT_ROSTER, backend, settings, model=MODEL)
    again = await run_analysis(snap, DEFAULT_ROSTER, backend, settings, model=MODEL)
    runs: list[Any] = [*first.agents, first.consolidation]
    assert all(r.cached_tokens is not None for r in runs)
    # The consolidator finds the snapshot's prefix in an agent's slot.
    assert first.consolidation is not None and first.consolidation.cached_tokens
    assert first.consolidation.method == "llm"
    # The same snapshot again: every agent finds at least the snapshot's prefix in a slot
    # (its own whole prompt, unless the consolidation took over that slot).
    for run in again.agents:
        assert run.cached_tokens and run.prompt_tokens is not None
        assert run.prompt_tokens * 4 < run.cached_tokens
    evaluated_again = sum(r.prompt_tokens or 0 for r in again.agents)
    assert evaluated_again < 0.3 * sum(r.prompt_tokens or 0 for r in first.agents)


# --- the runner warms the consolidator while stragglers run --------------------------------


async def analyse(server: SimulatedOllamaServer, **settings: Any) -> Any:
    return await run_analysis(
        scenario("cpu-saturation"),
        DEFAULT_ROSTER,
        lambda: OllamaBackend(server.url, simulated=True),
        RunSettings(quorum=5, **settings),
        model=MODEL,
        slots=ServerSlots(6, "test"),
    )


async def test_the_runner_warms_the_consolidator_and_it_then_prefills_little() -> None:
    config = SimConfig(time_scale=0.02, num_parallel=6)
    with SimulatedOllamaServer(config) as cold_server, SimulatedOllamaServer(config) as warm_server:
        cold = await analyse(cold_server, warmup=False)
        warm = await analyse(warm_server, warmup=True)
    assert cold.warmups == [] and warm.warmups
    assert all(w.status == "ok" and w.name == "Consolidator" + WARMUP_SUFFIX for w in warm.warmups)
    # Warm-ups run while agents are still out, never after the last answer.
    last_answer = max(a.end_s for a in warm.agents)
    assert all(w.start_s < last_answer for w in warm.warmups)
    assert warm.consolidation is not None and cold.consolidation is not None
    assert warm.consolidation.method == cold.consolidation.method == "llm"
    # Ollama's prompt_eval_count counts evaluated tokens only: the warmed one evaluated
    # little more than the last agent's findings.
    assert warm.consolidation.prompt_tokens is not None and cold.consolidation.prompt_tokens
    assert warm.consolidation.prompt_tokens <= 0.5 * cold.consolidation.prompt_tokens
    assert [i.title for i in warm.insights] == [i.title for i in cold.insights]


async def test_no_warmup_takes_a_slot_an_agent_waits_for() -> None:
    # One slot: an agent always waits for it until the last one is sent, so no warm-up.
    config = SimConfig(time_scale=0.01, num_parallel=1)
    with SimulatedOllamaServer(config) as server:
        result = await run_analysis(
            scenario("cpu-saturation"),
            DEFAULT_ROSTER,
            lambda: OllamaBackend(server.url, simulated=True),
            RunSettings(quorum=5),
            model=MODEL,
            slots=ServerSlots(1, "test"),
        )
    assert result.tier == "excellent" and result.warmups == []
