"""Several LLM hosts: the pool over real simulated Ollama servers on loopback.

Each endpoint is its own `SimulatedOllamaServer`; the servers' own counters (SimStats) say
which agents each one served. A server is stopped mid-run only once it holds requests
(`wait_for_in_flight`), never after a sleep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from engine.backends.base import BackendError, ChatRequest
from engine.backends.endpoints import EndpointSpec
from engine.backends.pool import PoolBackend, PoolMember, pick
from engine.backends.streaming import DEFAULT_RETRY
from engine.records import AnalysisResult
from engine.run.runner import RunSettings
from engine.run.slots import ServerSlots
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import scenario
from tests.support.simulated import SPECIALIST_NAMES, closed_port_url, served

MODEL = "llama3.1:8b"


@contextmanager
def servers(
    count: int, *, slots: int = 3, scale: float = 0.01, faults: dict[str, str] | None = None
) -> Iterator[list[SimulatedOllamaServer]]:
    """`count` simulated servers; `faults` apply to the first one only."""
    with ExitStack() as stack:
        out = []
        for n in range(count):
            config = SimConfig(
                profile="gpu",
                num_parallel=slots,
                time_scale=scale,
                faults=tuple((faults or {}).items()) if n == 0 else (),
            )
            out.append(stack.enter_context(SimulatedOllamaServer(config)))
        yield out


def pool_config(urls: list[str], *, slots: int = 3, scale: float = 0.01) -> BackendConfig:
    return BackendConfig(
        kind="simulated",
        model=MODEL,
        sim=SimConfig(profile="gpu", num_parallel=slots, time_scale=scale),
        endpoints=tuple(EndpointSpec("simulated", url=url, slots=slots) for url in urls),
    )


def analyze(config: BackendConfig, timeout_s: float = 20.0) -> AnalysisResult:
    settings = RunSettings(agent_timeout_s=timeout_s, grace_s=timeout_s)
    return Engine(config).analyze(scenario("cpu-saturation"), settings)


def test_agents_spread_over_two_endpoints_by_free_slots() -> None:
    with servers(2) as (first, second):
        config = pool_config([first.url, second.url])
        result = analyze(config)
    assert result.agents_participated == 5, [a.error for a in result.agents]
    # 3 + 3 slots, 5 agents, most free slots first: 3 on one, 2 on the other, none on both.
    assert sorted([len(served(first)), len(served(second))]) == [2, 3]
    assert served(first) | served(second) == SPECIALIST_NAMES
    assert not served(first) & served(second)
    assert result.server_slots == 6
    assert first.url in result.server_slots_source and second.url in result.server_slots_source
    assert result.backend.url == f"{first.url}, {second.url}"


def test_an_endpoint_killed_mid_run_every_agent_still_answers() -> None:
    # The first server streams one token to each of its agents and then holds them
    # ("hang"), so it is stopped while it certainly has three answers in flight — on a
    # loaded CI machine a timing window could close before the stop.
    hung = {agent: "hang" for agent in SPECIALIST_NAMES}
    with servers(2, faults=hung) as (first, second):
        config = pool_config([first.url, second.url])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(analyze, config)
            assert first.stats.wait_for_in_flight(3, timeout_s=15), "agents never reached it"
            first.stop()
            result = running.result(timeout=60)
    assert result.agents_participated == 5, [a.error for a in result.agents]
    assert result.tier == "excellent"
    # The three cut off on the first server were answered again by the second.
    assert len(served(first)) == 3
    assert served(second) == SPECIALIST_NAMES


def test_an_endpoint_refusing_connections_from_the_start_is_skipped() -> None:
    with servers(1) as (alive,):
        config = pool_config([closed_port_url(), alive.url])
        result = analyze(config)
    assert result.agents_participated == 5, [a.error for a in result.agents]
    assert served(alive) == SPECIALIST_NAMES


async def _pool_over(urls: list[str], slots: int = 3) -> PoolBackend:
    backend = pool_config(urls, slots=slots).factory(
        6, slots=[ServerSlots(slots, "test")] * len(urls)
    )
    assert isinstance(backend, PoolBackend)
    await backend.open()
    return backend


def _ask(agent: str) -> ChatRequest:
    return ChatRequest(model=MODEL, system="You are terse.", user="cpu 97%", agent=agent)


async def test_a_refused_endpoint_is_skipped_for_the_rest_of_the_run() -> None:
    with servers(1) as (alive,):
        dead = closed_port_url()
        pool = await _pool_over([dead, alive.url])
        try:
            first = await pool.chat(_ask("PerformanceAnalyst"))
            second = await pool.chat(_ask("SecurityAnalyst"))
        finally:
            await pool.aclose()
    assert first.endpoint == second.endpoint == alive.url
    assert pool.members[0].skipped is not None and "ConnectError" in pool.members[0].skipped
    assert [m.served for m in pool.members] == [0, 2]
    assert [m.in_flight for m in pool.members] == [0, 0]


async def test_an_endpoint_answering_5xx_is_skipped_and_the_agent_retried() -> None:
    busy = {agent: "busy" for agent in SPECIALIST_NAMES}  # HTTP 503 on the first server
    with servers(2, faults=busy) as (failing, healthy):
        pool = await _pool_over([failing.url, healthy.url])
        try:
            result = await pool.chat(_ask("CostOptimizer"))
        finally:
            await pool.aclose()
    assert result.endpoint == healthy.url
    assert pool.members[0].skipped == "HTTP 503"
    # The backend itself retries a 503 a bounded number of times before the pool skips.
    assert failing.stats.answers_by_agent() == {"CostOptimizer": DEFAULT_RETRY.busy_attempts}
    assert served(healthy) == {"CostOptimizer"}


async def test_an_error_about_the_answer_is_not_retried_elsewhere() -> None:
    # 404 "model not found" for this agent: another server would not make it right.
    with servers(2, faults={"CostOptimizer": "notfound"}) as (first, second):
        pool = await _pool_over([first.url, second.url])
        try:
            with pytest.raises(BackendError, match="404"):
                await pool.chat(_ask("CostOptimizer"))
        finally:
            await pool.aclose()
    assert pool.members[0].skipped is None
    assert served(second) == set()


async def test_when_every_endpoint_was_skipped_each_is_still_tried() -> None:
    # One agent's 500 on both servers marks both skipped; the next agent still answers.
    with servers(2) as (first, second):
        for server in (first, second):
            server.set_fault("CostOptimizer", "error")
        pool = await _pool_over([first.url, second.url])
        try:
            with pytest.raises(BackendError):
                await pool.chat(_ask("CostOptimizer"))
            assert all(m.skipped for m in pool.members)
            result = await pool.chat(_ask("SecurityAnalyst"))
        finally:
            await pool.aclose()
    assert result.endpoint == first.url


async def test_an_endpoint_s_own_model_name_is_sent_there() -> None:
    with servers(2) as (first, second):
        specs = (
            EndpointSpec("simulated", url=first.url, slots=1),
            EndpointSpec("simulated", url=second.url, slots=1, model="mistral:7b"),
        )
        config = BackendConfig(kind="simulated", model=MODEL, endpoints=specs)
        pool = config.factory(2, slots=[ServerSlots(1, "test")] * 2)
        assert isinstance(pool, PoolBackend)
        try:
            answers = await asyncio.gather(*(pool.chat(_ask(a)) for a in ("A", "B")))
        finally:
            await pool.aclose()
    by_endpoint = {a.endpoint: a.raw_final.get("model") for a in answers}
    assert by_endpoint == {first.url: MODEL, second.url: "mistral:7b"}


async def test_requests_wait_for_a_free_slot_instead_of_overfilling_an_endpoint() -> None:
    # One slot left after the other endpoint is gone: requests take turns there.
    with servers(1, slots=1) as (alive,):
        pool = await _pool_over([closed_port_url(), alive.url], slots=1)
        try:
            answers = await asyncio.gather(*(pool.chat(_ask(a)) for a in sorted(SPECIALIST_NAMES)))
        finally:
            await pool.aclose()
    assert {a.endpoint for a in answers} == {alive.url}
    assert alive.stats.max_in_flight == 1 and alive.stats.peak_queue == 0


class _Named:
    kind, simulated = "ollama", False

    def __init__(self, url: str) -> None:
        self.base_url = url


def _members(*slots_in_flight: tuple[int | None, int]) -> list[PoolMember]:
    return [
        PoolMember(_Named(f"http://h{n}"), slots=s, in_flight=f)  # type: ignore[arg-type]
        for n, (s, f) in enumerate(slots_in_flight)
    ]


@pytest.mark.parametrize(
    ("members", "tried", "prefer", "expected"),
    [
        (_members((3, 0), (3, 0)), set(), None, 0),  # a tie: the first listed
        (_members((3, 1), (3, 0)), set(), None, 1),  # most free slots
        (_members((4, 2), (1, 0)), set(), None, 0),  # 2 free beats 1 free
        (_members((2, 2), (1, 1)), set(), None, None),  # all full: wait
        (_members((None, 5), (3, 0)), set(), None, 0),  # no known limit: always room
        (_members((None, 5), (None, 2)), set(), None, 1),  # then fewer in flight
        (_members((3, 0), (3, 0)), {0}, None, 1),  # already tried for this request
        (_members((3, 0), (3, 2)), set(), 1, 1),  # the preferred one while it has room
    ],
)
def test_pick_the_endpoint_with_the_most_free_slots(
    members: list[PoolMember], tried: set[int], prefer: int | None, expected: int | None
) -> None:
    assert pick(members, tried, prefer) == expected


def test_a_skipped_endpoint_is_never_picked() -> None:
    members = _members((3, 0), (3, 2))
    members[0].skipped = "ConnectError"
    assert pick(members, set()) == 1


async def test_the_consolidator_follows_its_warm_ups_to_one_endpoint() -> None:
    with servers(2) as (first, second):
        pool = await _pool_over([first.url, second.url])
        try:
            # Sent together: the agent takes the first endpoint, the warm-up the second.
            agent, warmup = await asyncio.gather(
                pool.chat(_ask("CostOptimizer")), pool.chat(_ask("Consolidator.warmup"))
            )
            # Alone, both endpoints are free (a tie, so the first) — but its KV is on the second.
            final = await pool.chat(_ask("Consolidator"))
        finally:
            await pool.aclose()
    assert (agent.endpoint, warmup.endpoint, final.endpoint) == (first.url, second.url, second.url)


async def test_a_retried_call_counts_its_tokens_on_from_the_first_attempt() -> None:
    # Progress going back to 1 would make the retried agent look like a straggler.
    with servers(2, faults={"CostOptimizer": "hang"}) as (first, second):
        pool = await _pool_over([first.url, second.url])
        counts: list[int] = []
        try:
            call = asyncio.create_task(pool.chat(_ask("CostOptimizer"), counts.append))
            assert await asyncio.to_thread(first.stats.wait_for_in_flight, 1, 15)
            first.stop()  # mid-answer: one token was streamed
            result = await call
        finally:
            await pool.aclose()
    assert result.endpoint == second.url
    # One token from the first server, then the second's answer counted on from there.
    assert len(counts) > 2 and counts == list(range(1, len(counts) + 1))


def test_a_pool_with_any_simulated_endpoint_is_labelled_simulated() -> None:
    config = BackendConfig(
        kind="ollama",
        endpoints=(
            EndpointSpec("ollama", url="http://gpu1:11434"),
            EndpointSpec("simulated", url="http://127.0.0.1:11435"),
        ),
    )
    pool = config.factory(6)
    assert isinstance(pool, PoolBackend) and config.simulated
    assert (pool.kind, pool.simulated) == ("ollama+simulated", True)
    assert pool.base_url == "http://gpu1:11434, http://127.0.0.1:11435"
