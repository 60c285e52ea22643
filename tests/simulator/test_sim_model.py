"""The simulator's timing model through its public API, without HTTP: slots with a prefix
cache, FIFO order, prefill and decode on schedule, loads, stops and vanished clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.simulator import SimConfig, SimStats, TimingModel
from engine.simulator.model import RequestGone, split_prompt_tokens

PROMPT = "You are an SRE. " * 50  # 800 characters: 200 tokens at 4 a token


def here() -> bool:
    return False  # the client never leaves


def model(**overrides: Any) -> TimingModel:
    return TimingModel(SimConfig(**{"time_scale": 0.001, "num_parallel": 1, **overrides}))


def queue_of(n: int) -> Callable[[SimStats], bool]:
    return lambda stats: stats.peak_queue == n


def test_a_slot_reuses_the_prompt_it_read_last() -> None:
    sim = model()
    with sim.slot(PROMPT, here) as lease:
        first = sim.prefill(lease, here)
    with sim.slot(PROMPT + "and the role", here) as lease:
        second = sim.prefill(lease, here)
    assert (first.evaluated, first.cached) == (200, 0)
    assert (second.evaluated, second.cached) == split_prompt_tokens(PROMPT + "and the role", 800)
    stats = sim.stats.snapshot()
    assert stats.prompt_tokens_cached == 200
    assert stats.prompt_tokens_evaluated == 200 + second.evaluated


def test_without_prefix_cache_every_prompt_is_read_whole() -> None:
    sim = model(prefix_cache=False)
    for _ in range(2):
        with sim.slot(PROMPT, here) as lease:
            assert lease.reused_chars == 0 and sim.prefill(lease, here).cached == 0


def test_the_head_of_the_queue_gets_the_slot_with_the_longest_common_prefix() -> None:
    sim = model(num_parallel=2)
    with sim.slot("a" * 400, here) as first, sim.slot("b" * 400, here) as second:
        sim.prefill(first, here)
        sim.prefill(second, here)
    # The least recently used slot read "a"s: by recency alone this would reuse nothing.
    with sim.slot("b" * 400 + "?", here) as lease:
        assert lease.reused_chars == 400
    with sim.slot("a" * 200 + "?", here) as lease:
        assert lease.reused_chars == 200


def test_requests_take_the_slot_in_arrival_order_and_are_counted() -> None:
    sim = model()
    order: list[int] = []

    def take(n: int) -> None:
        with sim.slot(PROMPT, here):
            order.append(n)

    waiters = [threading.Thread(target=take, args=(n,)) for n in range(3)]
    with sim.slot(PROMPT, here):
        assert sim.stats.snapshot().in_flight == 1 and sim.slots_busy() == [True]
        for queued, waiter in enumerate(waiters, start=1):  # one at a time: a known order
            waiter.start()
            assert sim.stats.wait_for(queue_of(queued), timeout_s=10)
    for waiter in waiters:
        waiter.join(timeout=10)
    assert order == [0, 1, 2]
    stats = sim.stats.snapshot()
    assert stats.in_flight == 0 and stats.max_in_flight == 1 and stats.peak_queue == 3


def test_decode_reports_every_token_on_schedule() -> None:
    sim = model(share_compute=False, time_scale=0.01)  # 12 tok/s: ≈ 0.83 ms a token
    tokens, per_token = 30, 0.01 / sim.profile.decode_tps
    start = time.monotonic()
    counts = list(sim.decode(tokens, here))
    elapsed = time.monotonic() - start
    assert counts == sorted(set(counts)) and counts[-1] == tokens
    assert elapsed >= tokens * per_token - 1e-3  # sleeps to absolute deadlines: never early
    slow_start = time.monotonic()
    assert list(sim.decode(tokens, here, slow=True))[-1] == tokens
    assert time.monotonic() - slow_start >= 3 * tokens * per_token - 1e-3


def test_the_first_use_loads_the_model_once() -> None:
    sim = model()
    rng = sim.rng("agent")
    with sim.model_in_use("llama3.1:8b", rng, here) as cold:
        pass
    with sim.model_in_use("llama3.1:8b", rng, here) as warm:
        pass
    assert sim.stats.snapshot().model_loads == 1
    assert cold >= sim.profile.load_s * 0.001 - 1e-4 and warm < cold
    assert [name for name, _ in sim.loaded_models()] == ["llama3.1:8b"]


def test_a_client_that_left_or_a_stop_ends_the_request() -> None:
    sim = model(time_scale=1.0)  # a 200-token prefill would take 0.8 s
    with sim.slot(PROMPT, here) as lease, pytest.raises(RequestGone):
        sim.prefill(lease, lambda: True)
    assert sim.stats.snapshot().in_flight == 0  # the slot was given back
    stopper = threading.Thread(target=sim.stop)
    with sim.slot(PROMPT, here):
        stopper.start()
        sim.hold(here)  # returns once the server stops
    stopper.join(timeout=10)
    assert sim.stopping and not sim.stop()  # a second stop is a no-op
    with pytest.raises(RequestGone), sim.slot(PROMPT, here) as lease:
        sim.prefill(lease, here)


def test_faults_are_checked_by_kind() -> None:
    sim = model(faults=(("CostOptimizer", "slow"),))
    assert sim.fault_for("CostOptimizer") == "slow" and sim.fault_for("Other") is None
    sim.set_fault("CostOptimizer", None)
    assert sim.fault_for("CostOptimizer") is None
    with pytest.raises(ValueError, match="kind: unknown fault 'melt'"):
        sim.set_fault("CostOptimizer", "melt")
