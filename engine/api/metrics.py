"""Quorum's own metrics (`GET /metrics`), observed from each AnalysisResult the API serves.

The runner already measures every agent (docs/contract.md); this module only turns those
records into Prometheus series, at the API boundary, so that an ops team can alert on
"the security agent times out" and graph agent latency beside the LLM server's. Each app
has its own `CollectorRegistry` (never the global one), so two apps in one test process
do not collide. No label carries a secret: agent names, model names, tiers, statuses.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from engine.records import AgentRun, AnalysisResult

# Seconds: from a simulated run at a small time scale (milliseconds) to a slow CPU LLM.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    20.0, 30.0, 60.0, 120.0, 300.0)  # fmt: skip
PHASES = ("client_queue", "server_queue", "load", "prefill", "decode")
AGENT_STATUSES = ("ok", "timeout", "error", "cancelled")


def phase_seconds(run: AgentRun) -> dict[str, float | None]:
    """Where one call's seconds went, by phase name; None where nothing was measured."""
    return {
        "client_queue": run.client_queue_s,
        "server_queue": run.queue_s,
        "load": run.load_s,
        "prefill": run.prefill_s,
        "decode": run.decode_s,
    }


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.agent_duration = Histogram(
            "quorum_agent_duration_seconds", "Wall time of one agent call, by agent and model",
            ["agent", "model"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.agent_phase = Histogram(
            "quorum_agent_phase_seconds",
            "Seconds of one agent call in each phase (client_queue: Quorum's own slot queue; "
            "server_queue, load, prefill, decode: the server's report)",
            ["agent", "model", "phase"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.agent_outcomes = Counter(
            "quorum_agent_outcomes", "Agent calls by how they ended", ["agent", "status"],
            registry=r,
        )  # fmt: skip
        self.runs = Counter("quorum_runs", "Fresh analyses (fan-outs) by tier and mode",
                            ["tier", "mode"], registry=r)  # fmt: skip
        self.cache_hits = Counter("quorum_cache_hits", "Analyses served from the cache", registry=r)
        self.cache_misses = Counter(
            "quorum_cache_misses", "Analyses that had to run (cache off, empty or expired)",
            registry=r,
        )  # fmt: skip
        self.joins = Counter(
            "quorum_single_flight_joins",
            "Requests that waited for an identical analysis already running in this process",
            registry=r,
        )
        self.tokens = Counter("quorum_tokens", "LLM tokens of fresh runs, by direction and model",
                              ["direction", "model"], registry=r)  # fmt: skip
        self.warmup_saved = Counter(
            "quorum_warmup_tokens_saved",
            "Consolidation prompt tokens the server reused from its prefix cache after warm-ups",
            registry=r,
        )
        self.alerts = Counter("quorum_alerts", "Alertmanager alerts received, by what was done",
                              ["action"], registry=r)  # fmt: skip
        self.notifications = Counter(
            "quorum_notifications", "Notifier deliveries by notifier and outcome",
            ["notifier", "outcome"], registry=r,
        )  # fmt: skip

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, result: AnalysisResult, *, joined: bool) -> None:
        """Count one served analysis; a fresh run also feeds the agent series."""
        if result.cache.hit:
            (self.joins if joined else self.cache_hits).inc()
            return
        self.cache_misses.inc()
        self.runs.labels(tier=result.tier, mode=result.mode).inc()
        calls: list[AgentRun] = list(result.agents)
        if result.consolidation is not None:
            calls.append(result.consolidation)
        for run in calls:
            self._observe_call(run)
        for run in [*calls, *result.warmups]:
            model = run.model or result.backend.model
            if run.prompt_tokens:
                self.tokens.labels(direction="in", model=model).inc(run.prompt_tokens)
            if run.output_tokens:
                self.tokens.labels(direction="out", model=model).inc(run.output_tokens)
        cons = result.consolidation
        if result.warmups and cons is not None and cons.cached_tokens:
            self.warmup_saved.inc(cons.cached_tokens)

    def _observe_call(self, run: AgentRun) -> None:
        self.agent_outcomes.labels(agent=run.name, status=run.status).inc()
        self.agent_duration.labels(agent=run.name, model=run.model).observe(run.duration_s)
        for phase, seconds in phase_seconds(run).items():
            if seconds is not None:
                self.agent_phase.labels(agent=run.name, model=run.model, phase=phase).observe(
                    seconds
                )
