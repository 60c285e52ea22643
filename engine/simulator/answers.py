"""What the simulated model says: the USE-method rules' answer to a Quorum prompt.

Answers come from the rules the prompts quote (`engine.run.use_method`), so they are
schema-valid and true to the snapshot; a prompt that is not Quorum's gets a short generic
answer, and the `malformed` fault prose instead of JSON.
"""

from __future__ import annotations

import json

from engine.run import agents, use_method

MALFORMED = (
    "Sure! Here is my analysis: the host looks fairly busy overall, and it would probably "
    "help to add some capacity and keep an eye on the dashboards. Let me know if you want me "
    "to go deeper into any particular resource or explain the USE method in more detail!"
)
_GENERIC = {
    "summary": "Simulated Ollama: this is not a Quorum analysis prompt, so there is nothing "
    "to analyse.",
    "findings": [],
}


def answer_for_prompt(user: str) -> tuple[str, str, str]:
    """(role, kind, JSON text) for a prompt: the rules' answer, or a short generic one."""
    try:
        prompt = agents.read_prompt(user)
        if prompt.role == "consolidator" and prompt.answers:  # the full consolidation
            insights = use_method.merge_findings(prompt.answers)
            n = len(prompt.answers)
            summary = (
                f"{len(insights)} distinct insight(s) from {n} specialist answer(s); "
                f"most severe: {insights[0].title} ({insights[0].severity})."
                if insights
                else f"No issues in {n} specialist answer(s)."
            )
            merged = {"summary": summary, "insights": [i.to_dict() for i in insights]}
            return prompt.role, "consolidator", json.dumps(merged)
        if prompt.role == "consolidator":  # the compact verdict (or a warm-up's prefix of it)
            verdict = use_method.verdict_for(prompt.findings)
            return prompt.role, "consolidator", json.dumps(verdict, separators=(",", ":"))
        kind = "generalist" if prompt.role == use_method.ALL_ROLES else "specialist"
        return prompt.role, kind, json.dumps(use_method.agent_answer(prompt.values, prompt.role))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "foreign", "foreign", json.dumps(_GENERIC)


def token_pieces(text: str, tokens: int) -> list[str]:
    """`text` cut into `tokens` consecutive pieces, one a decoded token (some may be empty
    when the text is shorter than its token count)."""
    return [text[i * len(text) // tokens : (i + 1) * len(text) // tokens] for i in range(tokens)]
