from __future__ import annotations

from pathlib import Path

import pytest

from engine import agents
from engine.agents import DEFAULT_ROSTER, RosterError, load_roster, parse_json_answer, read_prompt
from engine.snapshot import scenario


def test_prompt_round_trip_for_the_simulated_server() -> None:
    v = scenario("disk-io-bound").quantised()
    user = agents.agent_user_prompt("performance", v)
    role, values, answers = read_prompt(user)
    assert role == "performance" and answers == []
    assert values["disk_queue_depth"] == 14.5
    assert "disk_queue_depth = 14.5" in user  # grounding quoted in the prompt


def test_consolidation_prompt_carries_the_answers() -> None:
    v = scenario("healthy").quantised()
    user = agents.consolidation_user_prompt(v, [("A", {"summary": "x", "findings": []})])
    role, _, answers = read_prompt(user)
    assert role == "consolidator" and answers == [("A", {"summary": "x", "findings": []})]


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
        '[agents.Consolidator]\nmodel = "llama3.1:70b"\n[agents.CostOptimizer]\nmodel = "qwen2.5:3b"\n'
    )
    roster = load_roster(path)
    assert roster.consolidator.model == "llama3.1:70b"
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
