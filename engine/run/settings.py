"""How a run behaves (`RunSettings`) and the consolidation variants `Engine.compare` times.

Everything in `RunSettings` can change the answer, so all of it is in the cache key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from engine.records import Mode

MODES: tuple[Mode, ...] = ("parallel", "sequential", "single")
ConsolidationStyle = Literal["compact", "full"]
CONSOLIDATION_STYLES: tuple[ConsolidationStyle, ...] = ("compact", "full")


@dataclass(frozen=True)
class RunSettings:
    """How a run behaves. Everything here can change the answer, so all of it is in the cache key."""

    mode: Mode = "parallel"
    quorum: int = 3  # successes needed before stragglers get only `grace_s` more
    grace_s: float = 2.0
    # Option B of ../shared/plan/next-steps-multi-agent-optimization.md: consolidate at
    # quorum, fold late answers in.
    overlap: bool = False
    agent_timeout_s: float = 30.0
    deadline_s: float | None = None  # the whole run, agents and consolidation
    max_concurrency: int | None = None  # None: as many as there are agents
    # compact: the Consolidator ranks and groups finding ids (a few dozen tokens);
    # full: it rewrites every insight (what Quorum, like the sequential baseline it
    # started from, did before; ≈ 5× slower).
    consolidation: ConsolidationStyle = "compact"
    # After each answer, prefill the consolidation prompt so far in a free server slot
    # (engine/run/warmup.py); only on servers whose slots are known, which keep a KV cache each.
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.quorum < 1:
            raise ValueError(f"quorum: must be ≥ 1, got {self.quorum}")
        if self.grace_s < 0:
            raise ValueError(f"grace: must be ≥ 0 seconds, got {self.grace_s:g}")
        if self.agent_timeout_s <= 0:
            raise ValueError(f"agent timeout: must be > 0 seconds, got {self.agent_timeout_s:g}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline: must be > 0 seconds, got {self.deadline_s:g}")
        if self.consolidation not in CONSOLIDATION_STYLES:
            raise ValueError(
                f"consolidation: must be one of {', '.join(CONSOLIDATION_STYLES)}, "
                f"got {self.consolidation!r}"
            )
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max concurrency: must be ≥ 1, got {self.max_concurrency}")

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# --- consolidation variants: full vs compact, cold vs warm (issue 8) ----------------------


@dataclass(frozen=True)
class ConsolidationVariant:
    """One way to consolidate, run fresh and in parallel by `Engine.compare`."""

    key: str  # its key in `compare --json`
    label: str
    style: ConsolidationStyle  # RunSettings.consolidation
    warmup: bool  # RunSettings.warmup


CONSOLIDATION_VARIANTS: tuple[ConsolidationVariant, ...] = (
    ConsolidationVariant("full_cold", "full, no warm-up (before)", "full", warmup=False),
    ConsolidationVariant("compact_cold", "compact, no warm-up", "compact", warmup=False),
    ConsolidationVariant("compact_warm", "compact, warmed (default)", "compact", warmup=True),
)
