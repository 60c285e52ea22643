"""Records that cross a boundary: agent runs, insights and the analysis result.

These dataclasses *are* the JSON output contract (`analyze --json`, the dashboard, the
history file and the cache all use `to_dict`/`from_dict`). Field names and meanings are
documented in docs/contract.md.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from engine import sanitize

AgentStatus = Literal["ok", "timeout", "error", "cancelled"]
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]
Tier = Literal["excellent", "good", "basic", "fallback", "single"]
Mode = Literal["parallel", "sequential", "single"]
# Where `critical_path_s` came from: the server's own timings, the client's clock, or both.
TimingSource = Literal["server", "client", "mixed"]

SEVERITIES: tuple[Severity, ...] = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


def _pick(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    """Keep only the keys `cls` knows, so older or newer records still load."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class AgentRun:
    """One LLM call: who, how it ended, and where its seconds went.

    Times are seconds. `start_s`/`end_s` are relative to the start of the run: `start_s`
    is when the agent was asked for, `client_queue_s` how long it then waited in Quorum's
    own queue for a free server slot before its request was sent (its timeout starts
    there). `queue_s`, `load_s`, `prefill_s`, `decode_s` come from the server's own report
    (None when the server does not report them); `ttft_s` is measured by the client from
    dispatch. An agent that timed out or was cancelled keeps what was measured until then
    (TTFT, `output_tokens` streamed so far).
    """

    name: str
    role: str
    model: str
    status: AgentStatus = "ok"
    start_s: float = 0.0
    end_s: float = 0.0
    duration_s: float = 0.0
    ttft_s: float | None = None
    queue_s: float | None = None
    load_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    response_chars: int = 0
    error: str | None = None
    client_queue_s: float | None = None
    cached_tokens: int | None = None  # prompt tokens reused from the server's prefix cache
    endpoint: str | None = None  # the LLM host that answered (several endpoints only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentRun:
        return cls(**_pick(cls, data))

    @property
    def server_work_s(self) -> float | None:
        """The server's own account of its work on this call (load + prefill + decode),
        or None when it reported none (a timed-out call, or a server without timings)."""
        if self.prefill_s is None and self.decode_s is None:
            return None
        return (self.load_s or 0.0) + (self.prefill_s or 0.0) + (self.decode_s or 0.0)

    @property
    def work_s(self) -> float:
        """Seconds this call could not avoid: the server's own timings where it reports
        them, else the client's wall time less any wait for a slot (ours or the server's)."""
        server = self.server_work_s
        if server is not None:
            return server
        waited = (self.queue_s or 0.0) + (self.client_queue_s or 0.0)
        return max(0.0, self.duration_s - waited)


@dataclass
class ConsolidationRun(AgentRun):
    """The consolidation step: an LLM call (`llm`) or the deterministic merge (`fallback`)."""

    method: Literal["llm", "fallback"] = "fallback"
    summary: str | None = None  # the Consolidator's one-line verdict (method `llm`)
    verdict_confidence: int | None = None  # the Consolidator's confidence in its verdict

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsolidationRun:
        return cls(**_pick(cls, data))


@dataclass
class Insight:
    title: str
    observation: str
    recommendations: list[str] = field(default_factory=list)
    severity: Severity = "LOW"
    confidence: int = 0
    agents: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Insight:
        return cls(**_pick(cls, data))


@dataclass
class BackendInfo:
    kind: str
    url: str
    model: str
    simulated: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendInfo:
        return cls(**_pick(cls, data))


@dataclass
class CacheInfo:
    hit: bool = False
    age_s: float | None = None
    # The TTL the cache entry was stored with: short for a degraded result (fewer than all
    # agents answered); None when the result is not in the cache (cache off or failing).
    ttl_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheInfo:
        return cls(**_pick(cls, data))


@dataclass
class AnalysisResult:
    """The answer to one `analyze` call: the output contract of the product.

    Beyond the contract's fields it carries `quorum_reached_s` (when the quorum-th
    agent succeeded, for the waterfall marker), `late_agents` (folded in by overlap
    consolidation), `error` (when `status` is `error`), `created_at` (unix seconds
    when the engine run finished), `simulated_profile` (name of the simulated
    server's timing profile, None on a real server), `critical_path_source` and the
    server slots the run was scheduled to (docs/contract.md).
    """

    status: Literal["success", "error"]
    mode: Mode
    backend: BackendInfo
    snapshot_key: str
    tier: Tier
    confidence: int
    agents_participated: int
    agents_total: int
    missing_roles: list[str]
    execution_time_s: float
    critical_path_s: float
    cache: CacheInfo
    agents: list[AgentRun]
    consolidation: ConsolidationRun | None
    insights: list[Insight]
    collaboration_summary: str
    quorum_reached_s: float | None = None
    late_agents: list[str] = field(default_factory=list)
    error: str | None = None
    created_at: float = 0.0
    simulated_profile: str | None = None
    critical_path_source: TimingSource = "client"
    server_slots: int | None = None  # requests Quorum sent at once; None: no limit
    server_slots_source: str = ""  # where that number came from, in words
    warmups: list[AgentRun] = field(default_factory=list)  # consolidator prefix warm-ups
    # Set by the engine (engine/service.py), docs/contract.md: which served result this is
    # (`GET /api/runs/{id}`, the dashboard's `?run=ID`; every call, cache hits too), the
    # simulator's time scale, and the snapshot's origin.
    run_id: str = ""
    simulated_time_scale: float | None = None
    host: str = ""
    source: str = ""
    # The requests that learned the server's slots before the fan-out (engine/backends/slot_probe.py)
    slot_probes: list[AgentRun] = field(default_factory=list)
    # The server's throughput curve learned from its measured runs (engine/throughput.py):
    # {"prefill": [...], "decode": [...], "source": "..."}; None until one is known.
    server_curve: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisResult:
        # Stored text enters here (the cache, Redis, the history), possibly written by an
        # older version or another replica: made safe once, like a backend's answers
        # (not capped: what was stored is not cut).
        data = sanitize.tree(data, limit=sys.maxsize, finite=False)
        picked = _pick(cls, data)
        picked["backend"] = BackendInfo.from_dict(data["backend"])
        picked["cache"] = CacheInfo.from_dict(data.get("cache") or {})
        picked["agents"] = [AgentRun.from_dict(a) for a in data.get("agents", [])]
        cons = data.get("consolidation")
        picked["consolidation"] = ConsolidationRun.from_dict(cons) if cons else None
        picked["insights"] = [Insight.from_dict(i) for i in data.get("insights", [])]
        picked["warmups"] = [AgentRun.from_dict(w) for w in data.get("warmups", [])]
        picked["slot_probes"] = [AgentRun.from_dict(p) for p in data.get("slot_probes", [])]
        return cls(**picked)
