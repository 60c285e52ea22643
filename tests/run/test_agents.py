from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.run import agents, use_method
from engine.run.agents import (
    DEFAULT_ROSTER,
    RosterError,
    load_roster,
    parse_json_answer,
    read_prompt,
)
from engine.sources.snapshot import SCENARIOS, scenario


def test_prompt_round_trip_for_the_simulated_server() -> None:
    v = scenario("disk-io-bound").quantised()
    user = agents.agent_user_prompt("performance", v)
    prompt = read_prompt(user)
    assert prompt.role == "performance" and prompt.answers == [] and prompt.findings == []
    assert prompt.values["disk_queue_depth"] == 14.5
    assert "disk_queue_depth = 14.5" in user  # grounding quoted in the prompt


def test_full_consolidation_prompt_carries_the_answers() -> None:
    v = scenario("healthy").quantised()
    user = agents.full_consolidation_user_prompt(v, [("A", {"summary": "x", "findings": []})])
    prompt = read_prompt(user)
    assert prompt.role == "consolidator"
    assert prompt.answers == [("A", {"summary": "x", "findings": []})]


def _outputs(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    v = scenario(name).quantised()
    return [
        (a.name, a.role, use_method.agent_answer(v, a.role)) for a in DEFAULT_ROSTER.specialists
    ]


def test_compact_consolidation_prompt_round_trips_the_findings() -> None:
    v = scenario("cpu-saturation").quantised()
    findings = use_method.compact_findings(_outputs("cpu-saturation"))
    prompt = read_prompt(agents.consolidation_user_prompt(v, findings))
    assert prompt.role == "consolidator" and prompt.complete
    assert [f.id for f in prompt.findings] == [f.id for f in findings]
    assert [(f.insight.title, f.insight.severity, f.insight.metrics) for f in prompt.findings] == [
        (f.insight.title, f.insight.severity, f.insight.metrics) for f in findings
    ]
    partial = read_prompt(agents.consolidation_prefix(v, findings[:3]))
    assert not partial.complete and len(partial.findings) == 3


# --- prefix stability: every prompt about one snapshot starts with the same bytes ----


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_prompt_shares_the_snapshot_prefix(name: str) -> None:
    v = scenario(name).quantised()
    roster = DEFAULT_ROSTER
    findings = use_method.compact_findings(_outputs(name))
    everyone = (*roster.specialists, roster.consolidator, roster.generalist)
    assert {a.system_prompt for a in everyone} == {agents.SHARED_SYSTEM_PROMPT}
    users = [agents.agent_user_prompt(a.role, v, a.instructions) for a in roster.specialists]
    users += [agents.consolidation_user_prompt(v, findings, roster.consolidator.instructions)]
    snapshot_json = json.dumps({k: x for k, x in v.items() if x is not None}, sort_keys=True)
    shared = min(_common_prefix(users[0], u) for u in users[1:])
    # The shared part holds the snapshot and every check; only the role comes after it.
    assert snapshot_json in users[0][:shared]
    assert users[0][:shared].endswith("]\nRole: ")  # the last check line, then the role
    for agent, user in zip(roster.specialists, users, strict=False):
        assert user[shared:].startswith(f"{agent.role}\n")
        assert user.rstrip().endswith("recommendations each.")


def test_prompts_are_byte_stable_for_the_same_snapshot() -> None:
    a, b = scenario("memory-leak").quantised(), scenario("memory-leak").quantised()
    assert agents.agent_user_prompt("cost", a) == agents.agent_user_prompt("cost", b)
    fa = use_method.compact_findings(_outputs("memory-leak"))
    fb = use_method.compact_findings(_outputs("memory-leak"))
    assert agents.consolidation_user_prompt(a, fa) == agents.consolidation_user_prompt(b, fb)


def test_consolidation_prompt_only_grows_as_agents_arrive() -> None:
    v = scenario("error-spike").quantised()
    outputs = _outputs("error-spike")
    final = agents.consolidation_user_prompt(v, use_method.compact_findings(outputs))
    previous = ""
    for n in range(len(outputs) + 1):
        prefix = agents.consolidation_prefix(v, use_method.compact_findings(outputs[:n]))
        assert final.startswith(prefix) and prefix.startswith(previous)
        previous = prefix
    assert final == previous + "```"  # after the last agent only the close is new
    # The ids an agent got do not depend on who came before it.
    reordered = use_method.compact_findings([outputs[2], outputs[0]])
    assert {f.id for f in reordered} <= {f.id for f in use_method.compact_findings(outputs)}


# --- bounded schemas and token caps ---------------------------------------------------


def _unbounded(schema: Mapping[str, Any], where: str = "$") -> list[str]:
    out: list[str] = []
    if schema.get("type") == "string" and "enum" not in schema and "maxLength" not in schema:
        out.append(where)
    if schema.get("type") == "array":
        if "maxItems" not in schema:
            out.append(where)
        out += _unbounded(schema["items"], f"{where}[]")
    for key, sub in schema.get("properties", {}).items():
        out += _unbounded(sub, f"{where}.{key}")
    return out


@pytest.mark.parametrize(
    "schema", [agents.AGENT_SCHEMA, agents.CONSOLIDATION_SCHEMA, agents.VERDICT_SCHEMA]
)
def test_every_string_and_array_is_bounded(schema: dict[str, Any]) -> None:
    assert _unbounded(schema) == []
    assert agents.token_cap(schema) * 3 >= agents.schema_max_chars(schema)


def test_schema_max_chars_is_the_longest_valid_answer() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "string", "maxLength": 3},
                             "maxItems": 2}},
    }  # fmt: skip
    longest = json.dumps({"a": ["xxx", "yyy"]}, separators=(",", ":"))
    assert agents.schema_max_chars(schema) == len(longest)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rule_answers_fit_the_bounded_schemas(name: str) -> None:
    v = scenario(name).quantised()
    for role in (*use_method.ROLES, use_method.ALL_ROLES):
        answer = use_method.agent_answer(v, role)
        assert_bounded(agents.AGENT_SCHEMA, answer)
        assert len(json.dumps(answer)) // 3 < agents.AGENT_MAX_TOKENS
    verdict = use_method.verdict_for(use_method.compact_findings(_outputs(name)))
    assert_bounded(agents.VERDICT_SCHEMA, verdict)


def assert_bounded(schema: Mapping[str, Any], value: Any, where: str = "$") -> None:
    if "maxLength" in schema:
        assert len(value) <= schema["maxLength"], where
    if "maxItems" in schema:
        assert schema.get("minItems", 0) <= len(value) <= schema["maxItems"], where
        for i, item in enumerate(value):
            assert_bounded(schema["items"], item, f"{where}[{i}]")
    if "enum" in schema:
        assert value in schema["enum"], where
    for key in schema.get("required", ()):
        assert key in value, f"{where}.{key}"
    for key, sub in schema.get("properties", {}).items():
        if key in value:
            assert_bounded(sub, value[key], f"{where}.{key}")


def test_every_agent_has_a_token_cap_sized_to_its_schema() -> None:
    roster = DEFAULT_ROSTER
    for spec in (*roster.specialists, roster.generalist):
        assert spec.max_tokens == agents.token_cap(agents.AGENT_SCHEMA)
    assert roster.consolidator.max_tokens == agents.token_cap(agents.VERDICT_SCHEMA)
    assert roster.consolidator.max_tokens is not None and roster.consolidator.max_tokens < 256


def test_read_prompt_rejects_foreign_text() -> None:
    with pytest.raises(ValueError):
        read_prompt("hello there")


@pytest.mark.parametrize(
    "text",
    [
        '{"summary": "s", "findings": []}',
        'Sure! ```json\n{"summary": "s", "findings": []}\n``` hope that helps',
        'Answer: {"summary": "s", "findings": []} -- end',
    ],
)
def test_parse_tolerates_fences_and_chatter(text: str) -> None:
    assert parse_json_answer(text) == {"summary": "s", "findings": []}


@pytest.mark.parametrize("text", ["", "no json here", "[1, 2]", "{broken"])
def test_parse_gives_none_for_non_objects(text: str) -> None:
    assert parse_json_answer(text) is None


def test_roster_overrides_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "quorum.toml"
    path.write_text(
        '[agents.Consolidator]\nmodel = "llama3.1:70b"\nmax_tokens = 96\n'
        '[agents.CostOptimizer]\nmodel = "qwen2.5:3b"\ninstructions = "Count the money."\n'
    )
    roster = load_roster(path)
    assert roster.consolidator.model == "llama3.1:70b"
    assert roster.consolidator.max_tokens == 96
    assert roster.specialists[3].instructions == "Count the money."
    assert roster.specialists[3].model == "qwen2.5:3b"
    assert roster.fingerprint() != DEFAULT_ROSTER.fingerprint()
    filled = roster.with_default_model("m")
    assert filled.specialists[0].model == "m" and filled.consolidator.model == "llama3.1:70b"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[agents.Nobody]\nmodel = "x"\n', "agents.Nobody: unknown agent"),
        ('[agents.Consolidator]\ncolour = "x"\n', "agents.Consolidator.colour"),
        ('[agents.Consolidator]\nmodel = ""\n', "must be a non-empty string"),
        ("[agents\n", "invalid TOML"),
        ("[agents.Consolidator]\nmax_tokens = 0\n", "agents.Consolidator.max_tokens: must be"),
        ('[agents.Consolidator]\nmax_tokens = "64"\n', "agents.Consolidator.max_tokens: must be"),
    ],
)
def test_roster_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "quorum.toml"
    path.write_text(toml)
    with pytest.raises(RosterError, match=message):
        load_roster(path)


def test_schemas_require_the_contract_fields() -> None:
    item = agents.CONSOLIDATION_SCHEMA["properties"]["insights"]["items"]
    assert set(item["required"]) == {
        "title", "observation", "recommendations", "severity", "confidence", "metrics", "agents",
    }  # fmt: skip


def test_the_simulated_verdict_bounds_its_groups_as_the_schema_does() -> None:
    group = agents.VERDICT_SCHEMA["properties"]["insights"]["items"]
    assert group["maxItems"] == use_method._VERDICT_GROUP_IDS
