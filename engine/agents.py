"""The agents: who they are, what they are asked, and how their answers are read.

The roster (five specialists, the consolidator, the generalist for single-agent mode)
can be overridden from a TOML file. Prompts carry the quantised snapshot as a JSON block
and the USE-method findings as grounding; answers are JSON with a schema that is also
sent to the server as structured output.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from engine import use_method

DEFAULT_MODEL = "llama3.1:8b"


@dataclass(frozen=True)
class AgentSpec:
    name: str
    role: str
    system_prompt: str
    model: str | None = None  # None: the backend's default model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Roster:
    specialists: tuple[AgentSpec, ...]
    consolidator: AgentSpec
    generalist: AgentSpec

    def fingerprint(self) -> str:
        """Changes whenever any name, role, prompt or model does (part of the cache key)."""
        payload = json.dumps(
            [a.to_dict() for a in (*self.specialists, self.consolidator, self.generalist)],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def with_default_model(self, model: str) -> Roster:
        def fill(a: AgentSpec) -> AgentSpec:
            return a if a.model else replace(a, model=model)

        return Roster(
            tuple(fill(a) for a in self.specialists), fill(self.consolidator), fill(self.generalist)
        )


_JSON_RULE = (
    "Answer with JSON only, matching the given schema. Cite snapshot field names in `metrics`."
)

DEFAULT_ROSTER = Roster(
    specialists=(
        AgentSpec(
            "PerformanceAnalyst",
            "performance",
            "You are a performance engineer who applies Brendan Gregg's USE method: for every "
            "resource check utilisation, saturation and errors, and find what limits latency. "
            + _JSON_RULE,
        ),
        AgentSpec(
            "InfrastructureExpert",
            "infrastructure",
            "You are an infrastructure/SRE expert. Judge capacity, headroom and the hosts' "
            "configuration; say what to scale, resize or reconfigure. " + _JSON_RULE,
        ),
        AgentSpec(
            "SecurityAnalyst",
            "security",
            "You are a security analyst. Look for signs of abuse, attacks or misconfiguration in "
            "error rates, traffic and network errors. " + _JSON_RULE,
        ),
        AgentSpec(
            "CostOptimizer",
            "cost",
            "You are a FinOps engineer. Find waste and over-provisioning, and the cost of the "
            "current saturation. " + _JSON_RULE,
        ),
        AgentSpec(
            "ReliabilityEngineer",
            "reliability",
            "You are a reliability engineer. Judge SLO risk: error rates, latency against "
            "baseline, OOM kills and anything that will page someone tonight. " + _JSON_RULE,
        ),
    ),
    consolidator=AgentSpec(
        "Consolidator",
        "consolidator",
        "You are the tech lead. Merge the specialists' findings into a short list of "
        "distinct insights: one per underlying problem, most severe first, naming the agents "
        "that support each. Do not invent metrics. " + _JSON_RULE,
    ),
    generalist=AgentSpec(
        "Generalist",
        "generalist",
        "You are a senior SRE. Analyse the host with the USE method from every angle "
        "(performance, capacity, security, cost, reliability). " + _JSON_RULE,
    ),
)

_FINDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "observation": {"type": "string"},
        "recommendations": {"type": "array", "items": {"type": "string"}},
        "severity": {"type": "string", "enum": ["CRITICAL", "HIGH", "MEDIUM", "LOW"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "metrics": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "observation", "recommendations", "severity", "confidence", "metrics"],
}
AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "findings": {"type": "array", "items": _FINDING_SCHEMA},
    },
    "required": ["summary", "findings"],
}
CONSOLIDATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "insights": {
            "type": "array",
            "items": {
                **_FINDING_SCHEMA,
                "properties": {
                    **_FINDING_SCHEMA["properties"],
                    "agents": {"type": "array", "items": {"type": "string"}},
                },
                "required": [*_FINDING_SCHEMA["required"], "agents"],
            },
        },
    },
    "required": ["summary", "insights"],
}


class RosterError(ValueError):
    """The roster TOML is wrong; str() names the table and key."""


def load_roster(path: str | Path | None) -> Roster:
    """The default roster, with overrides from a TOML file such as:

    [agents.PerformanceAnalyst]
    model = "mistral:7b"
    [agents.Consolidator]
    model = "llama3.1:70b"
    system_prompt = "..."
    """
    if path is None:
        return DEFAULT_ROSTER
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RosterError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"{path}: invalid TOML ({exc})") from None
    return apply_overrides(DEFAULT_ROSTER, data.get("agents", {}), source=str(path))


def apply_overrides(roster: Roster, agents: Any, *, source: str = "roster") -> Roster:
    if not isinstance(agents, Mapping):
        raise RosterError(f"{source}: [agents] must be a table")
    known = {a.name: a for a in (*roster.specialists, roster.consolidator, roster.generalist)}
    updated = dict(known)
    for name, table in agents.items():
        if name not in known:
            raise RosterError(f"{source}: agents.{name}: unknown agent (known: {', '.join(known)})")
        if not isinstance(table, Mapping):
            raise RosterError(f"{source}: agents.{name}: must be a table")
        changes: dict[str, str] = {}
        for key, value in table.items():
            if key not in ("model", "system_prompt"):
                raise RosterError(f"{source}: agents.{name}.{key}: only model and system_prompt")
            if not isinstance(value, str) or not value.strip():
                raise RosterError(f"{source}: agents.{name}.{key}: must be a non-empty string")
            changes[key] = value.strip()
        updated[name] = replace(known[name], **changes)
    return Roster(
        tuple(updated[a.name] for a in roster.specialists),
        updated[roster.consolidator.name],
        updated[roster.generalist.name],
    )


# --- prompts ---------------------------------------------------------------------------

_ROLE_LINE = "Role: "
_BLOCK = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)


def unknown_line(values: Mapping[str, float | None]) -> str:
    """The fields the source could not measure, named so a model does not read them as 0."""
    unknown = [name for name, value in values.items() if value is None]
    if not unknown:
        return ""
    return f"Unknown (no data; do not assume 0 or healthy): {', '.join(unknown)}\n"


def agent_user_prompt(role: str, values: Mapping[str, float | None]) -> str:
    """The user message for one agent: its role, the snapshot and the grounded checks."""
    snapshot_json = json.dumps({k: v for k, v in values.items() if v is not None}, sort_keys=True)
    checks = "\n".join(use_method.grounding_lines(values, role))
    return (
        f"{_ROLE_LINE}{role}\n"
        "Host metrics snapshot (USE method; field names are the metric ids):\n"
        f"```json\n{snapshot_json}\n```\n"
        f"{unknown_line(values)}"
        f"Deterministic USE-method checks for your perspective:\n{checks}\n"
        "Give 1-4 findings from your perspective with 2-3 actionable recommendations each."
    )


def consolidation_user_prompt(
    values: Mapping[str, float | None], outputs: Sequence[tuple[str, Mapping[str, Any]]]
) -> str:
    """The consolidator's user message: the snapshot and each agent's parsed JSON."""
    snapshot_json = json.dumps({k: v for k, v in values.items() if v is not None}, sort_keys=True)
    answers = json.dumps([{"agent": n, "answer": o} for n, o in outputs], sort_keys=True)
    return (
        f"{_ROLE_LINE}consolidator\n"
        f"Host metrics snapshot:\n```json\n{snapshot_json}\n```\n"
        f"{unknown_line(values)}"
        f"Specialist answers ({len(outputs)}):\n```json\n{answers}\n```\n"
        "Merge them into distinct insights; list in `agents` who supports each."
    )


def read_prompt(user: str) -> tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Inverse of the prompt builders: (role, snapshot values, agent answers).

    The simulated server uses this to answer from the same facts a real model is given.
    Raises ValueError when the text is not one of our prompts.
    """
    first = user.split("\n", 1)[0]
    if not first.startswith(_ROLE_LINE):
        raise ValueError("prompt has no 'Role:' line")
    role = first[len(_ROLE_LINE) :].strip()
    blocks = _BLOCK.findall(user)
    if not blocks:
        raise ValueError("prompt has no snapshot block")
    values = json.loads(blocks[0])
    answers: list[tuple[str, dict[str, Any]]] = []
    if len(blocks) > 1:
        answers = [(a["agent"], a["answer"]) for a in json.loads(blocks[1])]
    return role, values, answers


# --- reading answers -------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_answer(text: str) -> dict[str, Any] | None:
    """The JSON object in a model answer, tolerating fences and chatter; None if there is none."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None
