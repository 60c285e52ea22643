"""Slots that share compute: how fast each running sequence goes as more run at once.

An LLM server with N slots runs N sequences in one batch; on a CPU (or a GPU for prefill)
they share the same arithmetic, so each is slower than alone. `ThroughputCurve` gives
each sequence's prefill and decode speed as a fraction of one alone, by how many run.
The simulator (engine/simulator/model.py) runs its slots on its profile's curve, and the slot
advice (engine/report/timeline.py) predicts other slot counts with one. Every curve names its
source: a measurement here (`python -m bench.calibrate`) or a published benchmark.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ThroughputCurve:
    """Slots that share compute: each running sequence's prefill and decode speed, as a
    fraction of one sequence's alone, by how many sequences the server is running
    (`prefill[n-1]`, `decode[n-1]`; `[0]` is 1, so single-stream rates are unchanged).
    Beyond the table the last point's aggregate holds (more streams, no more throughput).
    Empty tables: every stream at full speed. `source` names the measurement."""

    prefill: tuple[float, ...]
    decode: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        for name, table in (("prefill", self.prefill), ("decode", self.decode)):
            if table and (table[0] != 1.0 or any(not 0 < f <= 1 for f in table)):
                raise ValueError(f"curve.{name}: factors in (0, 1], the first 1.0; got {table}")

    @property
    def flat(self) -> bool:
        return not self.prefill and not self.decode

    def factor(self, kind: str, running: int) -> float:
        """Per-stream speed of `kind` (prefill or decode) with `running` sequences."""
        table = self.prefill if kind == "prefill" else self.decode
        n = max(1, running)
        if not table:
            return 1.0
        if n <= len(table):
            return table[n - 1]
        return table[-1] * len(table) / n

    def aggregate(self, kind: str, running: int) -> float:
        """All streams together ÷ one stream alone."""
        return self.factor(kind, running) * max(1, running)


def curve_from_aggregates(
    prefill: Mapping[int, float], decode: Mapping[int, float], source: str, upto: int = 8
) -> ThroughputCurve:
    """A curve from published aggregate throughputs at some stream counts (tokens/s of all
    streams), linearly interpolated between them; per-stream factor = aggregate ratio ÷ n."""

    def table(points: Mapping[int, float]) -> tuple[float, ...]:
        known = sorted(points)
        base = points[1]
        out = []
        for n in range(1, upto + 1):
            lo = max(k for k in known if k <= n)
            hi = min((k for k in known if k >= n), default=lo)
            value = (
                points[lo]
                if hi == lo
                else points[lo] + (points[hi] - points[lo]) * (n - lo) / (hi - lo)
            )
            out.append(round(min(1.0, value / base / n), 4))
        return tuple(out)

    return ThroughputCurve(table(prefill), table(decode), source)


# Measured here (bench/calibration/llama_cpu.json, `curve`, measured_at 2026-12-04T19:37:13Z):
# per-stream factors at 1–6 streams (medians over 2 rounds) and the single-stream
# rates of the CI's server (SmolLM2-135M, 2 threads). The 2 cores were shared with other
# work (load average 0.7–1.9 during the steps, recorded per step). Aggregate decode:
# 1.17× at 2, 1.22× at 3, 1.28× at 4, 1.08× at 5, 1.45× at 6.
CPU_PREFILL_FACTORS: tuple[float, ...] = (1.0, 0.716, 0.332, 0.264, 0.273, 0.295)
CPU_DECODE_FACTORS: tuple[float, ...] = (1.0, 0.583, 0.407, 0.321, 0.216, 0.241)
SMOLLM2_PREFILL_TPS = 306.93
SMOLLM2_DECODE_TPS = 70.26
# SmolLM2's tokenizer on Quorum's agent prompts (system + user, cpu-saturation), counted
# by llama.cpp's /tokenize: `python -m bench.calibrate --tokens-only` (the JSON's `tokenizer`).
SMOLLM2_CHARS_PER_TOKEN = 2.877
# (load_s, prefill tok/s, decode tok/s, agent, consolidator, generalist output tokens):
# the lengths SmolLM2 wrote in this checkout's bench row R2 (medians of its answers).
CI_SMOLLM2_RATES = (0.3, SMOLLM2_PREFILL_TPS, SMOLLM2_DECODE_TPS, 354, 64, 354)
FLAT_CURVE = ThroughputCurve((), (), "none: every slot at full single-stream speed")
# CPU: measured here, llama.cpp's own server with SmolLM2-135M on 2 threads, 1–6 streams
# (`python -m bench.calibrate` → bench/calibration/llama_cpu.json; the test
# tests/simulator/test_simulated.py checks these numbers against that file).
CPU_CURVE = ThroughputCurve(
    prefill=CPU_PREFILL_FACTORS,
    decode=CPU_DECODE_FACTORS,
    source="measured here: llama.cpp server + SmolLM2-135M, 2 CPU threads, 1–6 streams "
    "(bench/calibration/llama_cpu.json)",
)
# GPU: llama.cpp's published batched-bench sample (examples/batched-bench/README.md,
# LLaMA 7B F16 on GPU, PP 128, TG 128, prompts not shared): S_PP and S_TG in tokens/s
# at B = 1, 2, 4, 8 sequences.
GPU_CURVE = curve_from_aggregates(
    {1: 1186.64, 2: 1295.19, 4: 1373.96, 8: 1363.27},
    {1: 41.57, 2: 50.90, 4: 74.44, 8: 139.43},
    "published: llama.cpp examples/batched-bench/README.md (LLaMA 7B F16, GPU; "
    "decode 1.79× aggregate at 4 sequences, 3.35× at 8)",
)
# A batching server (vLLM-class, continuous batching): Llama-3.1-8B BF16 on one A100
# 40GB, vLLM 0.23, decode 75 tok/s alone and 6.6× aggregate at 8 concurrent requests
# (J. Musgrave, "vLLM throughput-latency sweep on NVIDIA A100",
# https://johnmusgrave.com/p/vllm-throughput-latency-sweep-on); between 1 and 8 the
# aggregate is interpolated linearly ("almost for free up to 8"). Prefill is not in the
# source: taken as compute-bound like llama.cpp's (GPU_CURVE's).
BATCHING_CURVE = curve_from_aggregates(
    {1: 1186.64, 2: 1295.19, 4: 1373.96, 8: 1363.27},
    {1: 75.0, 8: 6.6 * 75.0},
    "published: vLLM 0.23, Llama-3.1-8B on an A100 (6.6× aggregate decode at 8 streams)",
)


# --- predicting a schedule on shared slots ----------------------------------------------


@dataclass(frozen=True)
class Job:
    """One call's work in single-stream seconds (what it would take alone)."""

    prefill_s: float
    decode_s: float


def shared_schedule(
    jobs: Sequence[Job], slots: int, curve: ThroughputCurve
) -> list[tuple[float, float]]:
    """(sent, ended) of each of `jobs` on `slots` slots that share compute as `curve` says:
    first come first served; every running job's current phase (prefill, then decode)
    advances at the curve's per-stream speed for the number running."""
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(jobs)
    waiting = list(range(len(jobs)))
    waiting.reverse()  # pop() takes them in order
    left = [[j.prefill_s, j.decode_s] for j in jobs]
    running: list[int] = []
    sent: dict[int, float] = {}
    now = 0.0
    while waiting or running:
        while waiting and len(running) < max(1, slots):
            index = waiting.pop()
            running.append(index)
            sent[index] = now
        n = len(running)
        rates = [curve.factor("prefill" if left[i][0] > 0 else "decode", n) for i in running]
        step = min(
            (left[i][0] if left[i][0] > 0 else left[i][1]) / r
            for i, r in zip(running, rates, strict=True)
        )
        now += step
        for i, rate in zip(running, rates, strict=True):
            phase = 0 if left[i][0] > 0 else 1
            left[i][phase] = max(0.0, left[i][phase] - step * rate)
        for i in [i for i in running if left[i][0] <= 1e-12 and left[i][1] <= 1e-12]:
            running.remove(i)
            spans[i] = (sent[i], now)
    return spans


def shared_makespan(jobs: Sequence[Job], slots: int, curve: ThroughputCurve) -> float:
    """When the last of `jobs` ends on `slots` slots that share compute as `curve` says."""
    return max((end for _, end in shared_schedule(jobs, slots, curve)), default=0.0)


# A call predicted to end within this share of its timeout counts as fitting: answers vary
# in length (±15 % in the simulator, more on real models), so a plan with no margin would
# time out every other run.
TIMEOUT_MARGIN = 0.8


@dataclass(frozen=True)
class ConcurrencyPlan:
    """How many requests to send at once, as predicted on a server's curve."""

    limit: int  # requests in flight at once
    fits: int  # calls predicted to end within TIMEOUT_MARGIN × the timeout of being sent
    makespan_s: float  # when the last call ends
    longest_s: float  # the longest call, from its send to its end


def concurrency_plans(
    jobs: Sequence[Job], slots: int, curve: ThroughputCurve, timeout_s: float
) -> list[ConcurrencyPlan]:
    """Each limit from 1 to `slots`, as `shared_schedule` predicts it."""
    plans = []
    for limit in range(1, max(1, slots) + 1):
        spans = shared_schedule(jobs, limit, curve)
        durations = [end - sent for sent, end in spans]
        fits = sum(1 for d in durations if d <= TIMEOUT_MARGIN * timeout_s)
        makespan = max((end for _, end in spans), default=0.0)
        plans.append(ConcurrencyPlan(limit, fits, makespan, max(durations, default=0.0)))
    return plans


def fitting_concurrency(
    jobs: Sequence[Job], slots: int, curve: ThroughputCurve, timeout_s: float
) -> ConcurrencyPlan:
    """The limit that lets the most calls end within their timeout, the fastest of those,
    the widest of equals. Slots that share compute can make every call slower than its
    timeout allows while giving little more throughput (the CPU curve: 1.3× aggregate at
    4 streams): then fewer at once answer more, and barely later."""
    plans = concurrency_plans(jobs, slots, curve, timeout_s)
    return max(plans, key=lambda p: (p.fits, -round(p.makespan_s, 6), p.limit))


# --- learning a server's curve from its runs ----------------------------------------------

MAX_SAMPLES = 12  # per stream count: the latest, so a changed server is followed


def concurrency_at(moment: float, spans: Sequence[tuple[float, float]]) -> int:
    """How many of `spans` (sent, ended) were open at `moment`."""
    return max(1, sum(1 for start, end in spans if start <= moment <= end))


def merge_samples(
    old: Mapping[str, Mapping[str, list[float]]], new: Mapping[str, Mapping[int, list[float]]]
) -> dict[str, dict[str, list[float]]]:
    """Per kind and stream count, the latest MAX_SAMPLES per-stream rates (JSON-safe keys)."""
    out: dict[str, dict[str, list[float]]] = {
        kind: {n: list(v) for n, v in table.items()} for kind, table in old.items()
    }
    for kind, table in new.items():
        mine = out.setdefault(kind, {})
        for n, rates in table.items():
            mine[str(n)] = (mine.get(str(n), []) + list(rates))[-MAX_SAMPLES:]
    return out


def learned_curve(
    samples: Mapping[str, Mapping[str, list[float]]], runs: int
) -> ThroughputCurve | None:
    """The curve this server showed: per-stream rate at n streams ÷ at 1, by kind (median
    of the samples); between counts seen the aggregate is interpolated. None until runs
    with one stream and with more than one have been seen."""
    tables: dict[str, tuple[float, ...]] = {}
    for kind in ("prefill", "decode"):
        by_n = {int(n): statistics.median(v) for n, v in samples.get(kind, {}).items() if v}
        if 1 not in by_n or len(by_n) < 2 or by_n[1] <= 0:
            return None
        aggregates = {n: rate * n for n, rate in by_n.items()}
        curve = curve_from_aggregates(aggregates, aggregates, "", upto=max(by_n))
        tables[kind] = curve.decode
    counts = sorted(int(n) for n in samples.get("decode", {}))
    return ThroughputCurve(
        tables["prefill"],
        tables["decode"],
        f"learned from {runs} measured run(s) of this server ({', '.join(map(str, counts))} streams)",
    )
