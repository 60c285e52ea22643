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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from engine import config
from engine.run import use_method

DEFAULT_MODEL = "llama3.1:8b"


# Every agent, the Consolidator included, gets this same system prompt: a chat template
# puts the system message first, so anything role-specific there would make every
# prompt differ from its first bytes and defeat the server's prefix cache.
SHARED_SYSTEM_PROMPT = (
    "You are a site-reliability agent in a team reviewing one host's metrics with the USE "
    "method, from the role given at the end. Answer with JSON only, matching the schema; "
    "cite snapshot field names."
)


@dataclass(frozen=True)
class AgentSpec:
    """One agent. `instructions` is its role-specific text (the end of its user message);
    `system_prompt` is shared by default; `max_tokens` caps its answer (None: no cap)."""

    name: str
    role: str
    instructions: str
    model: str | None = None  # None: the backend's default model
    system_prompt: str = SHARED_SYSTEM_PROMPT
    max_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Roster:
    specialists: tuple[AgentSpec, ...]
    consolidator: AgentSpec
    generalist: AgentSpec

    def fingerprint(self) -> str:
        """Changes whenever any name, role, prompt, model or cap does (part of the cache key)."""
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


# --- JSON schemas ----------------------------------------------------------------------
# Every string has a maxLength and every array a maxItems: a grammar-constrained model
# (llama.cpp, Ollama `format`) then has to close the JSON within a known size, and the
# token cap below is sized so it can.


def _string(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


def _array(items: dict[str, Any], max_items: int, min_items: int = 0) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}


_FINDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": _string(80),
        "observation": _string(240),
        "recommendations": _array(_string(160), 3),
        "severity": {"type": "string", "enum": ["CRITICAL", "HIGH", "MEDIUM", "LOW"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "metrics": _array(_string(32), 3),
    },
    "required": ["title", "observation", "recommendations", "severity", "confidence", "metrics"],
}
AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": _string(160), "findings": _array(_FINDING_SCHEMA, 4)},
    "required": ["summary", "findings"],
}
# The full consolidation (every insight written out): kept for comparison and for
# servers where a long consolidation is cheap; the default is the compact verdict.
CONSOLIDATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": _string(160),
        "insights": _array(
            {
                **_FINDING_SCHEMA,
                "properties": {**_FINDING_SCHEMA["properties"], "agents": _array(_string(40), 6)},
                "required": [*_FINDING_SCHEMA["required"], "agents"],
            },
            8,
        ),
    },
    "required": ["summary", "insights"],
}
# The compact consolidation: ranked insights as groups of finding ids (see use_method).
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "insights": _array(_array(_string(6), 6, min_items=1), 6),
        "summary": _string(120),
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["insights", "summary", "confidence"],
}


def schema_max_chars(schema: Mapping[str, Any]) -> int:
    """The longest compact JSON text `schema` allows (escapes aside): the bound a
    grammar-constrained answer cannot exceed."""
    kind = schema.get("type")
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    if kind == "string":
        return int(schema["maxLength"]) + 2
    if kind == "integer":
        return max(len(str(schema["minimum"])), len(str(schema["maximum"])))
    if kind == "array":
        n = int(schema["maxItems"])
        return 2 + n * schema_max_chars(schema["items"]) + max(0, n - 1)
    if kind == "object":
        props: Mapping[str, Any] = schema["properties"]
        fields = [len(json.dumps(k)) + 1 + schema_max_chars(v) for k, v in props.items()]
        return 2 + sum(fields) + max(0, len(fields) - 1)
    raise ValueError(f"schema: cannot bound type {kind!r}")


# Tokenisers spend ≈ 4 characters a token on English and fewer on JSON punctuation and
# numbers; 3 keeps the cap above any answer the schema allows for common tokenisers.
_CHARS_PER_TOKEN = 3


def token_cap(schema: Mapping[str, Any]) -> int:
    """A `max_tokens` sized to the schema: every valid answer fits, a runaway does not."""
    tokens = -(-schema_max_chars(schema) // _CHARS_PER_TOKEN)
    return -(-tokens // 64) * 64  # a round number to read in a roster file


AGENT_MAX_TOKENS = token_cap(AGENT_SCHEMA)
VERDICT_MAX_TOKENS = token_cap(VERDICT_SCHEMA)

DEFAULT_ROSTER = Roster(
    specialists=(
        AgentSpec(
            "PerformanceAnalyst",
            "performance",
            "You are a performance engineer who applies Brendan Gregg's USE method: for every "
            "resource check utilisation, saturation and errors, and find what limits latency.",
            max_tokens=AGENT_MAX_TOKENS,
        ),
        AgentSpec(
            "InfrastructureExpert",
            "infrastructure",
            "You are an infrastructure/SRE expert. Judge capacity, headroom and the hosts' "
            "configuration; say what to scale, resize or reconfigure.",
            max_tokens=AGENT_MAX_TOKENS,
        ),
        AgentSpec(
            "SecurityAnalyst",
            "security",
            "You are a security analyst. Look for signs of abuse, attacks or misconfiguration in "
            "error rates, traffic and network errors.",
            max_tokens=AGENT_MAX_TOKENS,
        ),
        AgentSpec(
            "CostOptimizer",
            "cost",
            "You are a FinOps engineer. Find waste and over-provisioning, and the cost of the "
            "current saturation.",
            max_tokens=AGENT_MAX_TOKENS,
        ),
        AgentSpec(
            "ReliabilityEngineer",
            "reliability",
            "You are a reliability engineer. Judge SLO risk: error rates, latency against "
            "baseline, OOM kills and anything that will page someone tonight.",
            max_tokens=AGENT_MAX_TOKENS,
        ),
    ),
    consolidator=AgentSpec(
        "Consolidator",
        "consolidator",
        "You are the tech lead. Decide which findings are the same underlying problem and "
        "which matter most; do not rewrite them.",
        max_tokens=VERDICT_MAX_TOKENS,
    ),
    generalist=AgentSpec(
        "Generalist",
        "generalist",
        "You are a senior SRE. Analyse the host with the USE method from every angle "
        "(performance, capacity, security, cost, reliability).",
        max_tokens=AGENT_MAX_TOKENS,
    ),
)


_TEXT_KEYS = ("model", "instructions", "system_prompt")
_MAX_TOKENS_LIMIT = 32768


class RosterError(ValueError):
    """The roster TOML is wrong; str() names the table and key."""


def load_roster(path: str | Path | None) -> Roster:
    """The default roster, with overrides from a TOML file such as:

    [agents.PerformanceAnalyst]
    model = "mistral:7b"
    [agents.Consolidator]
    model = "llama3.1:70b"
    instructions = "..."   # the role-specific text, at the end of the user message
    max_tokens = 192       # the answer's token cap (default: sized to the schema)
    """
    if path is None:
        return DEFAULT_ROSTER
    if not Path(path).is_file():
        raise RosterError(f"{path}: cannot read (No such file or directory)")
    try:
        data = config.read(path)
    except config.ConfigError as exc:
        raise RosterError(str(exc)) from None
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
        changes: dict[str, Any] = {}
        for key, value in table.items():
            if key == "max_tokens":
                if type(value) is not int or not 1 <= value <= _MAX_TOKENS_LIMIT:
                    raise RosterError(
                        f"{source}: agents.{name}.max_tokens: must be a whole number from 1 "
                        f"to {_MAX_TOKENS_LIMIT}, got {value!r}"
                    )
                changes[key] = value
                continue
            if key not in _TEXT_KEYS:
                raise RosterError(
                    f"{source}: agents.{name}.{key}: only {', '.join(_TEXT_KEYS)} and max_tokens"
                )
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
#
# Every prompt about one snapshot starts with the same bytes: the shared system prompt,
# then `_shared_prefix` (the snapshot and every check that fires). What differs comes
# last: an agent's role and instructions; the Consolidator's role, then the findings in
# the order they arrived. A server that keeps each slot's KV cache (llama.cpp, Ollama)
# prefills the shared part once, and a growing consolidation prompt only by its tail.

_ROLE_LINE = "Role: "
_BLOCK = re.compile(r"```(json|jsonl)\s*\n(.*?)\n```", re.DOTALL)
_ROLE = re.compile(rf"^{_ROLE_LINE}(\S+)\s*$", re.MULTILINE)
_FINDINGS_OPEN = "Specialist findings, one per line, in the order they arrived:\n```jsonl\n"


def unknown_line(values: Mapping[str, float | None]) -> str:
    """The fields the source could not measure, named so a model does not read them as 0."""
    unknown = [name for name, value in values.items() if value is None]
    if not unknown:
        return ""
    return f"Unknown (no data; do not assume 0 or healthy): {', '.join(unknown)}\n"


def _shared_prefix(values: Mapping[str, float | None]) -> str:
    snapshot_json = json.dumps({k: v for k, v in values.items() if v is not None}, sort_keys=True)
    checks = "\n".join(use_method.shared_grounding_lines(values))
    return (
        "Host metrics snapshot (USE method; field names are the metric ids):\n"
        f"```json\n{snapshot_json}\n```\n"
        f"{unknown_line(values)}"
        "Deterministic USE-method checks (the roles each concerns in brackets):\n"
        f"{checks}\n"
    )


def _default_instructions(role: str) -> str:
    roster = DEFAULT_ROSTER
    for spec in (*roster.specialists, roster.consolidator, roster.generalist):
        if spec.role == role:
            return spec.instructions
    return ""


def agent_user_prompt(
    role: str, values: Mapping[str, float | None], instructions: str | None = None
) -> str:
    """One agent's user message: the shared prefix, then its role and instructions
    (None: the default roster's for that role)."""
    text = _default_instructions(role) if instructions is None else instructions
    return (
        f"{_shared_prefix(values)}{_ROLE_LINE}{role}\n{text}\n"
        "Give 1-4 findings from your perspective with 2-3 actionable recommendations each."
    )


def _consolidation_head(values: Mapping[str, float | None], instructions: str | None) -> str:
    text = _default_instructions("consolidator") if instructions is None else instructions
    return (
        f"{_shared_prefix(values)}{_ROLE_LINE}consolidator\n{text}\n"
        "Answer with `insights`: the most important problems first (at most 6), each the ids "
        "of the findings that are that one problem; findings you leave out keep their own "
        "place. Add a one-line `summary` and your `confidence` (0-100).\n"
        f"{_FINDINGS_OPEN}"
    )


def consolidation_prefix(
    values: Mapping[str, float | None],
    findings: Sequence[use_method.CompactFinding],
    instructions: str | None = None,
) -> str:
    """The consolidation prompt as far as the findings so far: what a warm-up prefills.
    Each arriving agent only appends lines, so every prefix is a prefix of the final."""
    lines = "".join(
        json.dumps(f.to_prompt_json(values), separators=(",", ":")) + "\n" for f in findings
    )
    return _consolidation_head(values, instructions) + lines


def consolidation_user_prompt(
    values: Mapping[str, float | None],
    findings: Sequence[use_method.CompactFinding],
    instructions: str | None = None,
) -> str:
    """The Consolidator's user message: the prefix with every finding, then the close."""
    return consolidation_prefix(values, findings, instructions) + "```"


def full_consolidation_user_prompt(
    values: Mapping[str, float | None],
    outputs: Sequence[tuple[str, Mapping[str, Any]]],
    instructions: str | None = None,
) -> str:
    """The full consolidation (every agent's whole JSON answer), answered with
    CONSOLIDATION_SCHEMA: what Quorum did before the compact verdict."""
    text = _default_instructions("consolidator") if instructions is None else instructions
    answers = json.dumps([{"agent": n, "answer": o} for n, o in outputs], sort_keys=True)
    return (
        f"{_shared_prefix(values)}{_ROLE_LINE}consolidator\n{text}\n"
        f"Specialist answers ({len(outputs)}):\n```json\n{answers}\n```\n"
        "Merge them into distinct insights; list in `agents` who supports each."
    )


@dataclass(frozen=True)
class ParsedPrompt:
    role: str
    values: dict[str, Any]
    answers: list[tuple[str, dict[str, Any]]]  # a full consolidation's agent answers
    findings: list[use_method.CompactFinding]  # a compact consolidation's findings
    complete: bool  # False for a consolidation prefix (a warm-up): its findings are still open


def read_prompt(user: str) -> ParsedPrompt:
    """Inverse of the prompt builders. The simulated server uses this to answer from
    the same facts a real model is given. Raises ValueError for any other text."""
    blocks = _BLOCK.findall(user)
    if not blocks or blocks[0][0] != "json":
        raise ValueError("prompt has no snapshot block")
    role_match = _ROLE.search(user)
    if role_match is None:
        raise ValueError("prompt has no 'Role:' line")
    values = json.loads(blocks[0][1])
    answers: list[tuple[str, dict[str, Any]]] = []
    findings: list[use_method.CompactFinding] = []
    complete = True
    open_at = user.find(_FINDINGS_OPEN)
    if open_at >= 0:
        body = user[open_at + len(_FINDINGS_OPEN) :]
        complete = body.endswith("```")
        lines = body.removesuffix("```").splitlines()
        findings = [use_method.CompactFinding.from_prompt_json(json.loads(x)) for x in lines if x]
    elif len(blocks) > 1:
        answers = [(a["agent"], a["answer"]) for a in json.loads(blocks[1][1])]
    return ParsedPrompt(role_match.group(1), values, answers, findings, complete)


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
