"""The simulated server's timing profiles: how fast a model loads, prefills and decodes.

Profiles (seconds at time_scale 1, warm model, cold slots; the full consolidation's
prompt is ≈ 1500 tokens on `cpu-saturation`, a specialist's ≈ 300):

- `baseline` reproduces the team's measurement, 6 sequential calls ≈ 70 s (≈ 11.7 s a
  call) with an 8B Q4 model on CPU: llama.cpp typically prefills ≈ 250 tok/s and decodes
  ≈ 12 tok/s there. 120 output tokens make a specialist ≈ 1 + 10 = 11 s and the full
  consolidation ≈ 6 + 10 = 16 s (5 × 11 + 16 ≈ 71 s). The first load reads ≈ 5 GB: 3 s.
- `gpu`: the same model fully offloaded to a mid-range GPU (≈ 2500 tok/s prefill,
  ≈ 65 tok/s decode): ≈ 2 s a specialist, ≈ 2.5 s the consolidator; 2 s load.
- `cpu-small`: a 3B model on the same CPU (≈ 600 / 24 tok/s): ≈ 5.4 s a specialist,
  ≈ 7.5 s the consolidator, ≈ 6 s on average; 1.5 s load.
- `fast-consolidator`: `baseline`, but the consolidator writes at most 24 tokens.
- `ci-smollm2`: the CI's llama.cpp server with SmolLM2-135M on 2 threads, its rates as
  measured here (`python -m bench.calibrate`).

Slots share compute: each profile has a throughput curve (engine/throughput.py), the
per-stream prefill and decode speed by how many sequences are in a slot. Single-stream
speed is the profile's rate. CPU profiles use the curve measured here on llama.cpp's
server (bench/calibration/llama_cpu.json), `gpu` llama.cpp's published batched-bench
numbers; each curve names its source.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.throughput import (
    CI_SMOLLM2_RATES,
    CPU_CURVE,
    FLAT_CURVE,
    GPU_CURVE,
    SMOLLM2_CHARS_PER_TOKEN,
    ThroughputCurve,
)


@dataclass(frozen=True)
class SimProfile:
    name: str
    load_s: float
    prefill_tps: float
    decode_tps: float
    agent_output_tokens: int
    consolidator_output_tokens: int
    generalist_output_tokens: int
    jitter: float  # ± fraction of the output tokens, drawn per request
    description: str
    curve: ThroughputCurve = FLAT_CURVE  # how its slots share compute
    # Characters a prompt token: 4 by rule of thumb; a profile of a measured model may
    # carry its tokenizer's (ci-smollm2: SmolLM2's on Quorum's prompts, llama.cpp /tokenize).
    prompt_chars_per_token: float = 4.0

    def output_tokens(self, kind: str) -> int:
        if kind == "consolidator":
            return self.consolidator_output_tokens
        return self.generalist_output_tokens if kind == "generalist" else self.agent_output_tokens

    def call_s(self, kind: str, prompt_tokens: int) -> float:
        """Expected seconds for one warm, unqueued call at time_scale 1, without jitter."""
        return prompt_tokens / self.prefill_tps + self.output_tokens(kind) / self.decode_tps


PROFILES: dict[str, SimProfile] = {
    p.name: p
    for p in (
        SimProfile("baseline", 3.0, 250, 12, 120, 120, 200, 0.15,
                   "8B model on CPU: ≈ 11 s a specialist, ≈ 16 s a full consolidation",
                   CPU_CURVE),
        SimProfile("gpu", 2.0, 2500, 65, 120, 120, 200, 0.10,
                   "8B model on a GPU: ≈ 2 s a call", GPU_CURVE),
        SimProfile("cpu-small", 1.5, 600, 24, 120, 120, 200, 0.15,
                   "3B model on CPU: ≈ 6 s a call", CPU_CURVE),
        SimProfile("fast-consolidator", 3.0, 250, 12, 120, 24, 200, 0.15,
                   "baseline, the consolidator writing at most 24 tokens", CPU_CURVE),
        SimProfile("ci-smollm2", *CI_SMOLLM2_RATES, 0.0,
                   "the CI's llama.cpp server + SmolLM2-135M on 2 threads, as measured here",
                   CPU_CURVE, SMOLLM2_CHARS_PER_TOKEN),
    )
}  # fmt: skip
