"""Pacing: fewer agents at once than the server's slots when more would outlast their timeout.

On the CPU curve (engine/throughput.py) four streams each run ≈ 3× slower than one while
the server does ≈ 1.3× the work: on the `baseline` profile, four agents at once each take
longer than the 30 s agent timeout. These runs are real: the simulated server on loopback,
its slots sharing compute on the profile's curve, at time scale 0.05 with the timeout
scaled alike (1.5 s stands for 30 s).
"""

from __future__ import annotations

from engine.backends.server_slots import ServerSlots
from engine.run.agents import DEFAULT_ROSTER, AgentSpec
from engine.run.pacing import ServerModel, pace
from engine.run.settings import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer, simulated_server_model
from engine.sources.snapshot import scenario
from engine.store.state import ProcessSlotMemory
from engine.throughput import CPU_CURVE, FLAT_CURVE, Job

SCALE = 0.05
TIMEOUT_S = 30.0 * SCALE  # the default agent timeout, at the server's time scale
SPECIALISTS = DEFAULT_ROSTER.specialists


def asks(n: int = 5) -> list[tuple[AgentSpec, str]]:
    return [(spec, "x" * 2000) for spec in SPECIALISTS[:n]]


def fixed(job: Job, curve=CPU_CURVE) -> ServerModel:  # type: ignore[no-untyped-def]
    return ServerModel(curve, lambda spec, user: job, "a test's fixed estimate")


def test_no_pace_without_a_model_a_flat_curve_or_a_limit() -> None:
    slow = Job(2.8, 10.0)
    assert pace(None, asks(), 4, 30.0) is None
    assert pace(fixed(slow, FLAT_CURVE), asks(), 4, 30.0) is None
    assert pace(fixed(slow), asks(), None, 30.0) is None  # no known limit: nothing to lower
    assert pace(fixed(slow), asks(), 1, 30.0) is None
    assert pace(fixed(Job(0.1, 0.5)), asks(), 4, 30.0) is None  # they fit four at once


def test_the_pace_says_how_many_and_why() -> None:
    paced = pace(fixed(Job(2.8, 10.0)), asks(), 4, 30.0)
    assert paced is not None and paced.limit == 2
    assert "paced to 2 at a time" in paced.reason
    assert (
        "4 at once would each take up to" in paced.reason and "30 s agent timeout" in paced.reason
    )
    assert "a test's fixed estimate" in paced.reason


def test_the_simulated_model_is_its_profiles_rates_at_its_time_scale() -> None:
    model = simulated_server_model(SimConfig(profile="baseline", time_scale=0.5))
    assert model is not None and model.curve is CPU_CURVE
    spec = SPECIALISTS[0]
    job = model.work(spec, "y" * 4000)
    tokens = (len(spec.system_prompt) + 4000) / 4
    assert abs(job.prefill_s - tokens / 250 * 0.5) < 0.01
    assert abs(job.decode_s - 120 / 12 * 0.5) < 1e-9
    assert simulated_server_model(SimConfig(share_compute=False)) is None
    assert simulated_server_model(SimConfig(profile="gpu")) is not None


def run(engine: Engine, **settings: object) -> tuple[int, int | None, str]:
    result = engine.analyze(
        scenario("cpu-saturation"),
        RunSettings(agent_timeout_s=TIMEOUT_S, grace_s=2 * SCALE, **settings),  # type: ignore[arg-type]
        refresh=True,
    )
    return result.agents_participated, result.server_slots, result.server_slots_source or ""


def test_paced_every_agent_answers_where_all_at_once_most_time_out() -> None:
    sim = SimConfig(profile="baseline", num_parallel=4, time_scale=SCALE, seed=3)
    with SimulatedOllamaServer(sim) as server:
        engine = Engine(BackendConfig(kind="simulated", base_url=server.url, sim=sim))
        answered, slots, source = run(engine)
        assert (answered, slots) == (5, 2), source
        assert "paced" in source and "server: 4 slots" in source
        # The user's own limit is never overridden: four at once, as asked, and on this
        # curve most of them run past the timeout.
        forced, forced_slots, _ = run(engine, max_concurrency=4)
        assert forced_slots == 4 and forced < 5


def test_a_real_servers_pace_is_learned_from_its_own_runs() -> None:
    # An Ollama-protocol server the engine knows nothing about (not the embedded simulator):
    # the first run has nothing to pace by; it measures the curve and each agent's work.
    sim = SimConfig(profile="baseline", time_scale=SCALE, seed=5)  # Ollama's default: 4 slots
    with SimulatedOllamaServer(sim) as server:
        engine = Engine(
            BackendConfig(kind="ollama", base_url=server.url, model="llama3.1:8b"),
            slot_memory=ProcessSlotMemory(),
        )
        slots = engine.server_slots()
        assert isinstance(slots, ServerSlots)
        patient = engine.analyze(
            scenario("cpu-saturation"), RunSettings(agent_timeout_s=100 * SCALE), refresh=True
        )
        assert patient.agents_participated == 5 and "paced" not in patient.server_slots_source
        assert patient.server_curve is not None, "one stream and several were measured"
        answered, paced_slots, source = run(engine)
        assert paced_slots is not None and paced_slots < 4, source
        assert "this server's measured runs" in source
        assert answered == 5, source
