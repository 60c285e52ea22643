"""What a simulated server is: its profile, slots, time scale, seed, faults and protocol.

Slots, as Ollama picks them: `num_parallel` if given (OLLAMA_NUM_PARALLEL), else 4 where
the model fits in memory (`fits_in_memory`, the default) and 1 where it does not, as
Ollama does since its "concurrency by default" change (ollama/ollama PR #4218). Like
Ollama, it reports nothing about its slots: a client has to be told or find out
(engine/backends/slot_probe.py). In llama.cpp mode (`llama_props`) it answers `GET /props`
with `total_slots`, `GET /slots` and `GET /health` as llama.cpp's server does.

Faults, per `X-Quorum-Agent` header: `hang`, `error` (500), `error-midstream` (an
`{"error"}` line after a few tokens), `malformed` (prose, not JSON), `slow` (3× prefill
and decode), `busy` (503) and `notfound` (404).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from engine.simulator.profiles import PROFILES

VERSION = "0.6.0-simulated"
DEFAULT_MODELS: tuple[str, ...] = ("llama3.1:8b", "mistral:7b", "qwen2.5:3b", "llama3.1:70b")
FAULT_KINDS: tuple[str, ...] = (
    "hang", "error", "error-midstream", "malformed", "slow", "busy", "notfound",
)  # fmt: skip

# Ollama's own choice when OLLAMA_NUM_PARALLEL is unset, since its "Enable concurrency by
# default" change (ollama/ollama PR #4218): 4 parallel requests per model where the model
# fits in memory 4 times over, else 1.
OLLAMA_AUTO_PARALLEL = 4


@dataclass(frozen=True)
class SimConfig:
    profile: str = "baseline"
    # None: pick as Ollama does without OLLAMA_NUM_PARALLEL (see `slots`).
    num_parallel: int | None = None
    time_scale: float = 1.0
    seed: int = 7
    faults: tuple[tuple[str, str], ...] = ()  # (agent name, fault kind)
    keep_alive_s: float = 300.0  # simulated seconds, so also scaled
    models: tuple[str, ...] = DEFAULT_MODELS
    accept_any_model: bool = True
    prefix_cache: bool = True  # keep each slot's KV and reuse the longest common prefix
    # Stands in for "the model fits in memory for 4 parallel requests", which decides
    # Ollama's default of 4 or 1 slots (only used when `num_parallel` is None).
    fits_in_memory: bool = True
    # llama.cpp mode: answer `GET /props` with `total_slots` (and `GET /slots`) as
    # llama.cpp's server does. Off, the server is like Ollama: it says nothing of its slots.
    llama_props: bool = False
    # False: every slot at full single-stream speed (the profile's curve ignored), for
    # tests of scheduling logic that want a run's proportions exact.
    share_compute: bool = True

    @property
    def slots(self) -> int:
        """The requests it runs at once: `num_parallel`, else Ollama's own pick."""
        if self.num_parallel is not None:
            return self.num_parallel
        return OLLAMA_AUTO_PARALLEL if self.fits_in_memory else 1

    @property
    def slots_source(self) -> str:
        """Where `slots` came from, in words (for a client that knows this config)."""
        if self.num_parallel is not None:
            return "the simulated server's num_parallel"
        fits = "the model fits in memory" if self.fits_in_memory else "the model does not fit 4×"
        return f"the simulated server's default, as Ollama picks it ({fits})"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(
                f"profile: unknown {self.profile!r}; choose one of {', '.join(PROFILES)}"
            )
        if self.num_parallel is not None and (
            type(self.num_parallel) is not int or self.num_parallel < 1  # bool is no count
        ):
            raise ValueError(f"num_parallel: must be a whole number ≥ 1, got {self.num_parallel!r}")
        if not (isinstance(self.time_scale, int | float) and 0 < self.time_scale < math.inf):
            raise ValueError(f"time_scale: must be a finite number > 0, got {self.time_scale!r}")
        if not (isinstance(self.keep_alive_s, int | float) and self.keep_alive_s >= 0):
            raise ValueError(f"keep_alive_s: must be ≥ 0, got {self.keep_alive_s!r}")
        for item in self.faults:
            if not (isinstance(item, tuple) and len(item) == 2 and item[1] in FAULT_KINDS):
                raise ValueError(
                    f"faults: want (agent, kind) with kind in {FAULT_KINDS}, got {item!r}"
                )

    def fingerprint(self) -> str:
        """Names what the answers and timings depend on (the profile's numbers included)."""
        payload = {**asdict(self), "faults": sorted(self.faults), "version": VERSION}
        payload["profile_values"] = asdict(PROFILES[self.profile])
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"simulated:{self.profile}:{digest[:16]}"
