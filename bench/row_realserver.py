"""R2: Quorum on llama.cpp's own server with a real (tiny) model, SmolLM2-135M-Instruct,
5 slots, 2 CPU threads: parallel against sequential.

On a CPU the slots share two cores, so five parallel streams are each slower than one
alone: the speedup is bounded by the server's aggregate throughput, not by 5×. The row
measures that bound in the same run — output tokens per second of decode with five
streams at once (the parallel run) over one stream at a time (the sequential run) —
and reports how much of it Quorum turns into wall-clock speedup. Skipped (and said so)
where llama.cpp's server is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.levels import Level
from bench.llama_server import find_server, start, stop
from bench.measure import Row, Target, check
from engine.records import AnalysisResult
from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.sources.snapshot import scenario

TIMEOUT_S = 600.0


def _decode_rate(result: AnalysisResult) -> float:
    """Output tokens per second over the agents phase (all streams together)."""
    tokens = sum(a.output_tokens or 0 for a in result.agents)
    phase = max(a.end_s for a in result.agents) - min(a.start_s for a in result.agents)
    return tokens / phase if phase > 0 else 0.0


def run(level: Level) -> Row:
    row = Row(
        "R2",
        "real server: llama.cpp + SmolLM2-135M (5 slots, 2 CPU threads), parallel vs sequential",
        "speedup ≥ 0.8 × the server's aggregate-throughput gain (the CPU bound)",
        {
            "profile": "real llama.cpp server (not simulated)",
            "time_scale": 1.0,
            "slots": 5,
            "repeats": 1,
            "settings": "defaults; agent timeout 600 s; token caps from the schemas",
        },
    )
    launcher, model = find_server()
    if level.name == "smoke":
        row.not_measured = "not measured at the smoke level (minutes of CPU inference)"
        return row
    if launcher is None or model is None:
        row.not_measured = "not measured: llama.cpp's server is not installed (.ci/run installs it)"
        return row
    server = start(launcher, model, 5, Path(tempfile.mkdtemp(prefix="quorum-bench-llama-")))
    try:
        engine = Engine(BackendConfig(kind="openai", base_url=server.url, model="smollm2"))
        settings = RunSettings(agent_timeout_s=TIMEOUT_S)
        snap = scenario("cpu-saturation")
        engine.analyze(snap, RunSettings(mode="single", agent_timeout_s=TIMEOUT_S))  # warm
        sequential = engine.analyze(snap, RunSettings(mode="sequential", agent_timeout_s=TIMEOUT_S))
        parallel = engine.analyze(snap, settings)
    finally:
        stop(server)
    seq_rate, par_rate = _decode_rate(sequential), _decode_rate(parallel)
    # Compare per token: the two runs sample different answer lengths.
    seq_per_token = sequential.execution_time_s / max(1, _tokens(sequential))
    par_per_token = parallel.execution_time_s / max(1, _tokens(parallel))
    speedup = seq_per_token / par_per_token
    gain = par_rate / seq_rate if seq_rate > 0 else 0.0
    row.checks += [
        check(
            "speedup per output token: sequential ÷ parallel wall, each ÷ its tokens",
            [speedup],
            "×",
            binding=False,
        ),
        check(
            "aggregate-throughput gain: decode tok/s with 5 streams ÷ with 1",
            [gain],
            "×",
            binding=False,
            note=f"{par_rate:.0f} vs {seq_rate:.0f} tok/s: the CPU bound on any speedup",
        ),
        check(
            "speedup ÷ throughput gain", [speedup / gain if gain else 0.0], "×", Target(">=", 0.8)
        ),
        check("sequential wall", [sequential.execution_time_s], "s", binding=False),
        check("parallel wall", [parallel.execution_time_s], "s", binding=False),
        check(
            "agents answered (parallel, sequential)",
            [float(parallel.agents_participated), float(sequential.agents_participated)],
            "of 5",
            binding=False,
            note="a 135M model writes poor JSON at times: those degrade, they do not crash",
        ),
    ]
    consolidation = parallel.consolidation
    if consolidation is not None and consolidation.prompt_tokens and consolidation.cached_tokens:
        evaluated = consolidation.prompt_tokens - consolidation.cached_tokens
        row.checks.append(
            check(
                "consolidation after warm-ups: prompt tokens evaluated ÷ its whole prompt",
                [evaluated / consolidation.prompt_tokens],
                "×",
                Target("<=", 0.25),
                note="a cold consolidation evaluates its whole prompt (issue 8's ≤ 25 %)",
            )
        )
    row.details = {
        "parallel": {a.name: (a.status, a.output_tokens) for a in parallel.agents},
        "sequential": {a.name: (a.status, a.output_tokens) for a in sequential.agents},
        "warmups": len(parallel.warmups),
        "server_slots": parallel.server_slots,
        "server_slots_source": parallel.server_slots_source,
    }
    return row


def _tokens(result: AnalysisResult) -> int:
    return sum(a.output_tokens or 0 for a in result.agents)
