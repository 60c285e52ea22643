"""The plan's own approach, as its snippets write it, to measure Quorum against.

From `../shared/plan/next-steps-multi-agent-optimization.md`, Task 1's complete example
(`analyze_collaborative`) with Task 2's per-agent `asyncio.wait_for` timeout:
- every agent at once with `asyncio.gather(..., return_exceptions=True)`, waiting for
  all of them, then one consolidation call;
- `_call_ollama(prompt)`: Ollama's `/api/generate`, not streaming, in a *fresh*
  `httpx.AsyncClient` per call (the plan lists connection pooling only as a future
  "bonus").

Two deliberate differences, both so that the simulated server does exactly the work it
does for Quorum and the comparison measures the client alone:
- prompts come from `engine.run.agents` (the plan's f-string puts the system message in
  the prompt; here it goes in `/api/generate`'s `system` field, which the server reads
  the same way, so the prompt tokens are the same);
- each call carries the `X-Quorum-Agent` header (a real Ollama ignores it; the simulator
  keys its per-agent random draws on it, so both clients draw the same answer lengths).
`_call_ollama` also records timings (the plan's Task 5 asks for such metrics); they do
not change what it does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine.run.agents import (
    DEFAULT_MODEL,
    DEFAULT_ROSTER,
    AgentSpec,
    Roster,
    agent_user_prompt,
    full_consolidation_user_prompt,
    parse_json_answer,
)
from engine.sources.snapshot import Snapshot

logger = logging.getLogger("bench.plan_baseline")

_NS = 1e-9


@dataclass
class CallTiming:
    """One `_call_ollama`: client-side seconds and the server's own report."""

    agent: str
    started_s: float  # since the analysis started
    client_ready_s: float  # how long building the fresh AsyncClient took
    duration_s: float
    server_s: float  # load + prompt_eval + eval, from the response
    queue_s: float  # total − load − prompt_eval − eval


@dataclass
class PlanResult:
    status: str
    agents_participated: int
    execution_time_s: float  # the whole analysis, consolidation included
    agents_time_s: float  # what the plan logs as "All agents completed in"
    insights: Any
    calls: list[CallTiming] = field(default_factory=list)

    @property
    def server_critical_path_s(self) -> float:
        agents = [c.server_s for c in self.calls if c.agent != DEFAULT_ROSTER.consolidator.name]
        consolidation = [
            c.server_s for c in self.calls if c.agent == DEFAULT_ROSTER.consolidator.name
        ]
        return max(agents, default=0.0) + sum(consolidation)


class PlanMultiAgent:
    """The plan's `AutoGenMultiAgent` after Tasks 1 and 2."""

    def __init__(
        self,
        ollama_url: str,
        model: str = DEFAULT_MODEL,
        *,
        roster: Roster = DEFAULT_ROSTER,
        http_timeout_s: float = 120.0,
        agent_timeout_s: float = 30.0,
    ) -> None:
        self.ollama_url = ollama_url.rstrip("/")
        self.model = model
        self.agents = roster.specialists
        self.consolidator = roster.consolidator
        self.http_timeout_s = http_timeout_s
        self.agent_timeout_s = agent_timeout_s
        self._t0 = 0.0
        self._calls: list[CallTiming] = []

    async def _call_ollama(self, prompt: str, system: str, agent: str) -> str:
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=self.http_timeout_s) as client:  # fresh per call
            ready = time.perf_counter()
            response = await client.post(
                f"{self.ollama_url}/api/generate",
                json={"model": self.model, "prompt": prompt, "system": system, "stream": False},
                headers={"X-Quorum-Agent": agent},
            )
            response.raise_for_status()
            data = response.json()
        done = time.perf_counter()
        load, prefill, decode = (
            data.get(k, 0) * _NS for k in ("load_duration", "prompt_eval_duration", "eval_duration")
        )
        self._calls.append(
            CallTiming(
                agent,
                started - self._t0,
                ready - started,
                done - started,
                load + prefill + decode,
                max(0.0, data.get("total_duration", 0) * _NS - load - prefill - decode),
            )
        )
        return str(data["response"])

    async def _consolidate_analyses(
        self, agent_analyses: list[dict[str, Any]], values: dict[str, float | None]
    ) -> Any:
        outputs = [(a["agent"], parse_json_answer(a["analysis"]) or {}) for a in agent_analyses]
        prompt = full_consolidation_user_prompt(values, outputs)  # the plan consolidates in full
        response = await self._call_ollama(
            prompt, self.consolidator.system_prompt, self.consolidator.name
        )
        parsed = parse_json_answer(response) or {}
        return parsed.get("insights", [])

    async def analyze_collaborative(self, snapshot: Snapshot) -> PlanResult:
        """Run collaborative analysis with all agents (PARALLEL)."""
        self._t0, self._calls = time.perf_counter(), []
        values = snapshot.quantised()

        async def call_single_agent(agent: AgentSpec) -> dict[str, Any] | None:
            try:
                prompt = agent_user_prompt(agent.role, values)
                response = await self._call_ollama(prompt, agent.system_prompt, agent.name)
                return {"agent": agent.name, "role": agent.role, "analysis": response}
            except Exception as e:
                logger.error(f"Error calling agent {agent.name}: {e}")
                return None

        async def call_agent_with_timeout(agent: AgentSpec) -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(call_single_agent(agent), self.agent_timeout_s)
            except TimeoutError:
                logger.warning(f"Agent {agent.name} timed out after {self.agent_timeout_s}s")
                return None

        tasks = [call_agent_with_timeout(agent) for agent in self.agents]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        agents_time_s = time.perf_counter() - self._t0
        agent_analyses = [r for r in results if isinstance(r, dict)]
        insights = await self._consolidate_analyses(agent_analyses, values)
        return PlanResult(
            status="success" if agent_analyses else "error",
            agents_participated=len(agent_analyses),
            execution_time_s=time.perf_counter() - self._t0,
            agents_time_s=agents_time_s,
            insights=insights,
            calls=list(self._calls),
        )


def analyze(ollama_url: str, snapshot: Snapshot, *, agent_timeout_s: float = 30.0) -> PlanResult:
    """One analysis the plan's way, from synchronous code (its own event loop, like
    `Engine.analyze`, so both are timed the same way)."""
    plan = PlanMultiAgent(ollama_url, agent_timeout_s=agent_timeout_s)
    return asyncio.run(plan.analyze_collaborative(snapshot))
