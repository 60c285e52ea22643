"""Slots that share compute: the curves, the schedule on them, learning one from runs,
and the simulated server running its slots on its profile's curve (real loopback HTTP)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from engine.simulator import PROFILES, SimConfig, SimulatedOllamaServer
from engine.throughput import (
    BATCHING_CURVE,
    CI_SMOLLM2_RATES,
    CPU_CURVE,
    FLAT_CURVE,
    GPU_CURVE,
    Job,
    ThroughputCurve,
    concurrency_plans,
    curve_from_aggregates,
    fitting_concurrency,
    learned_curve,
    merge_samples,
    shared_makespan,
    shared_schedule,
)

CALIBRATION = Path(__file__).resolve().parents[2] / "bench" / "calibration" / "llama_cpu.json"


def test_the_cpu_curve_is_the_calibration_measured_here() -> None:
    record = json.loads(CALIBRATION.read_text())
    points = record["curve"]
    assert [p["streams"] for p in points] == list(range(1, 7))
    assert CPU_CURVE.prefill == tuple(p["prefill_factor"] for p in points)
    assert CPU_CURVE.decode == tuple(p["decode_factor"] for p in points)
    single = points[0]
    assert CI_SMOLLM2_RATES[1:3] == (single["prefill_tps"], single["decode_tps"])
    assert record["machine"]["cpu_model"] and all("loadavg_before" in s for s in record["steps"])
    density = record["tokenizer"]["chars_per_token"]
    assert PROFILES["ci-smollm2"].prompt_chars_per_token == density


def test_every_profile_has_a_named_curve_and_its_single_stream_rates() -> None:
    for profile in PROFILES.values():
        assert profile.curve.source and not profile.curve.flat, profile.name
        assert profile.curve.factor("decode", 1) == profile.curve.factor("prefill", 1) == 1.0
    # The plan's numbers stay: 12 tok/s decode, 250 tok/s prefill alone on `baseline`.
    assert (PROFILES["baseline"].prefill_tps, PROFILES["baseline"].decode_tps) == (250, 12)


def test_curves_from_published_aggregates() -> None:
    # llama.cpp's batched-bench sample: S_TG 41.57 → 74.44 t/s at 4 sequences.
    assert GPU_CURVE.aggregate("decode", 4) == pytest.approx(74.44 / 41.57, rel=1e-3)
    assert BATCHING_CURVE.aggregate("decode", 8) == pytest.approx(6.6, rel=1e-3)
    curve = curve_from_aggregates({1: 10, 3: 20}, {1: 10, 3: 20}, "x", upto=4)
    assert curve.decode[1] == pytest.approx(15 / 10 / 2)  # interpolated aggregate ÷ n
    assert curve.aggregate("decode", 4) == pytest.approx(2.0)  # beyond the table: it holds
    with pytest.raises(ValueError, match=r"curve\.decode"):
        ThroughputCurve((), (0.5,), "a first factor must be 1")


def test_a_shared_schedule_is_slower_than_full_speed_slots() -> None:
    jobs = [Job(0.0, 1.0)] * 4
    assert shared_makespan(jobs, 4, FLAT_CURVE) == pytest.approx(1.0)
    assert shared_makespan(jobs, 1, FLAT_CURVE) == pytest.approx(4.0)
    # A server whose aggregate does not grow: four at once end when one after another do.
    no_gain = ThroughputCurve((1.0, 0.5, 1 / 3, 0.25), (1.0, 0.5, 1 / 3, 0.25), "no gain")
    assert shared_makespan(jobs, 4, no_gain) == pytest.approx(4.0)
    assert shared_makespan(jobs, 4, GPU_CURVE) == pytest.approx(
        4 / GPU_CURVE.aggregate("decode", 4)
    )


def test_a_curve_is_learned_from_samples_at_one_stream_and_more() -> None:
    samples = merge_samples({}, {"prefill": {1: [100.0]}, "decode": {1: [10.0], 4: [5.0]}})
    assert learned_curve(samples, 1) is None  # prefill seen at one stream only
    samples = merge_samples(samples, {"prefill": {4: [40.0]}, "decode": {}})
    curve = learned_curve(samples, 2)
    assert curve is not None and "learned from 2 measured run(s)" in curve.source
    assert curve.factor("decode", 4) == pytest.approx(0.5) and curve.factor("prefill", 4) == 0.4
    assert len(merge_samples(samples, {"decode": {1: [1.0] * 20}})["decode"]["1"]) == 12


def _eval_s(url: str, results: list[float]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    final = httpx.post(f"{url}/api/chat", json=body, timeout=60).json()
    results.append(final["eval_duration"] / 1e9 / final["eval_count"])


def test_the_simulator_shares_compute_between_its_slots() -> None:
    # gpu: decode per stream at 2 streams is 0.61 of one alone (published batched-bench).
    with SimulatedOllamaServer(SimConfig(profile="gpu", num_parallel=2, time_scale=0.3)) as s:
        alone: list[float] = []
        _eval_s(s.url, alone)  # loads the model
        alone.clear()
        _eval_s(s.url, alone)
        pair: list[float] = []
        threads = [threading.Thread(target=_eval_s, args=(s.url, pair)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert alone[0] == pytest.approx(0.3 / 65, rel=0.15)  # the single-stream rate, unchanged
    assert min(pair) / alone[0] > 1.3  # each of two is slower (1 / 0.61 ≈ 1.6 by the curve)


# --- how many to send at once when slots share compute ------------------------------------

HALVING = ThroughputCurve((1.0, 0.5), (1.0, 0.5), "two streams: each at half speed")


def test_the_schedule_gives_each_call_its_send_and_end() -> None:
    jobs = [Job(0.0, 1.0), Job(0.0, 2.0), Job(0.0, 1.0)]
    assert shared_schedule(jobs, 1, FLAT_CURVE) == [(0.0, 1.0), (1.0, 3.0), (3.0, 4.0)]
    # Two at a time at half speed each: the first ends at 2 s, the third starts then.
    spans = shared_schedule(jobs, 2, HALVING)
    assert spans[0] == pytest.approx((0.0, 2.0))
    assert spans[2][0] == pytest.approx(2.0)
    assert shared_makespan(jobs, 2, HALVING) == pytest.approx(max(e for _, e in spans))


def test_flat_slots_send_everything_at_once() -> None:
    jobs = [Job(0.5, 2.0)] * 5
    plan = fitting_concurrency(jobs, 4, FLAT_CURVE, timeout_s=30.0)
    assert (plan.limit, plan.fits) == (4, 5)


def test_on_the_cpu_curve_fewer_at_once_answer_every_agent() -> None:
    # baseline's agent alone: ≈ 2.8 s prefill + 10 s decode. Four at once on the CPU curve
    # take ≈ 40 s each (1.3× aggregate), past a 30 s timeout; two at once ≈ 23 s.
    jobs = [Job(2.8, 10.0 * f) for f in (1.0, 0.9, 1.1, 0.95, 1.05)]
    plans = {p.limit: p for p in concurrency_plans(jobs, 4, CPU_CURVE, timeout_s=30.0)}
    assert plans[4].fits < 5 and plans[4].longest_s > 30.0
    chosen = fitting_concurrency(jobs, 4, CPU_CURVE, timeout_s=30.0)
    assert chosen.fits == 5 and chosen.limit in (1, 2)
    assert chosen.makespan_s == min(p.makespan_s for p in plans.values() if p.fits == 5)


def test_when_nothing_fits_the_plan_is_the_fastest() -> None:
    jobs = [Job(0.0, 20.0)] * 3  # 20 s alone against a 10 s timeout: none can fit
    assert fitting_concurrency(jobs, 3, FLAT_CURVE, timeout_s=10.0).limit == 3
    # Two at half speed are no faster than one after another: equals, the widest.
    plan = fitting_concurrency(jobs[:2], 2, HALVING, timeout_s=10.0)
    assert plan.fits == 0 and plan.limit == 2
