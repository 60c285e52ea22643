"""The JSON contract (docs/contract.md), pinned byte for byte on deterministic runs.

The simulated server answers the same seed with the same text, so a run's contract is the
same every time but for what the clock measured. Each case below runs the real engine on
the embedded simulated server and compares `AnalysisResult.to_dict()` — field order,
values, insights, statuses, errors, the Consolidator's verdict — with a file in
tests/golden/. Only measured values are masked: seconds (`*_s`), `created_at`, `run_id`,
the loopback port, and the lists whose length depends on timing (warm-ups).

A refactor that changes a byte of the contract fails here. A deliberate change to the
contract regenerates the files (`QUORUM_UPDATE_GOLDEN=1 pytest tests/test_contract_golden.py`)
and shows up in the diff for review.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from engine.run.runner import RunSettings
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from engine.sources.snapshot import scenario

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("QUORUM_UPDATE_GOLDEN") == "1"
MEASURED = "<measured>"
TIME_KEYS = {"created_at", "run_id", "age_s"}
TIMING_LISTS = {"warmups"}  # how many warm-ups fit depends on when answers arrive
# The curve the engine learned from this run's measured timings (speeds, and which stream
# counts were seen at once): the clock's.
MEASURED_CURVES = {"server_curve"}
# With warm-ups on, how much of the consolidation prompt was already cached depends on
# which warm-up had finished when it was sent: the simulated Ollama counts only evaluated
# prompt tokens, so both counts are timing (the parallel case only).
WARMED = {"prompt_tokens", "cached_tokens"}

# (case, scenario, settings, simulator config)
CASES: list[tuple[str, str, RunSettings, SimConfig]] = [
    ("parallel", "cpu-saturation", RunSettings(), SimConfig(num_parallel=6)),
    (
        "sequential-full",
        "memory-leak",
        RunSettings(mode="sequential", consolidation="full", warmup=False),
        SimConfig(num_parallel=1),
    ),
    ("single", "error-spike", RunSettings(mode="single"), SimConfig(num_parallel=1)),
    (
        "parallel-faults",
        "disk-io-bound",
        RunSettings(warmup=False),
        SimConfig(
            num_parallel=6,
            faults=(("SecurityAnalyst", "error"), ("CostOptimizer", "malformed")),
        ),
    ),
    ("fallback", "healthy", RunSettings(), SimConfig(num_parallel=6, faults=tuple(
        (name, "error") for name in
        ("PerformanceAnalyst", "InfrastructureAnalyst", "SecurityAnalyst", "CostOptimizer")
    ))),
]  # fmt: skip


def masked(value: Any, key: str = "", warmed: bool = False) -> Any:
    """The contract with what the clock measured replaced by a marker."""
    if isinstance(value, dict):
        return {k: _masked_field(k, v, warmed) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    if (key.endswith("_s") or key in TIME_KEYS) and value is not None:
        return MEASURED
    if isinstance(value, str):
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", value)
    return value


def _masked_field(key: str, value: Any, warmed: bool) -> Any:
    if key in TIMING_LISTS or (key in MEASURED_CURVES and value is not None):
        return MEASURED
    if key == "consolidation" and warmed and isinstance(value, dict):
        return {k: (MEASURED if k in WARMED else masked(v, k)) for k, v in value.items()}
    return masked(value, key, warmed)


def contract(case: str, name: str, settings: RunSettings, sim: SimConfig) -> str:
    sim = SimConfig(**{**sim.__dict__, "time_scale": 0.01, "seed": 7})
    # A server of its own: the shared one counts requests per agent across tests, and the
    # nth request's answer is what the seed fixes.
    with SimulatedOllamaServer(sim) as server:
        engine = Engine(BackendConfig(kind="simulated", base_url=server.url, sim=sim))
        result = engine.analyze(scenario(name), settings)
    text = masked(result.to_dict(), warmed=settings.warmup and settings.mode == "parallel")
    return json.dumps(text, indent=1, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(("case", "name", "settings", "sim"), CASES, ids=[c[0] for c in CASES])
def test_contract_is_byte_identical(
    case: str, name: str, settings: RunSettings, sim: SimConfig
) -> None:
    text = contract(case, name, settings, sim)
    path = GOLDEN / f"{case}.json"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with QUORUM_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


def test_the_mask_hides_only_what_the_clock_measured() -> None:
    # The mask must not hide the contract: statuses, counts, text and tokens stay.
    data = {"status": "ok", "end_s": 1.5, "output_tokens": 12, "error": "at 127.0.0.1:4242"}
    assert masked(data) == {
        "status": "ok", "end_s": MEASURED, "output_tokens": 12, "error": "at 127.0.0.1:<port>"
    }  # fmt: skip
