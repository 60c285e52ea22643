from __future__ import annotations

from typing import Any

import pytest

from engine.records import Insight
from engine.run import use_method
from engine.run.agents import DEFAULT_ROSTER
from engine.sources.snapshot import SCENARIOS, scenario


def values(name: str) -> dict[str, float | None]:
    return scenario(name).quantised()


def test_cpu_saturation_findings() -> None:
    found = use_method.findings(values("cpu-saturation"))
    by_metric = {f.metrics[0]: f for f in found}
    assert by_metric["cpu_util_pct"].severity == "CRITICAL"
    assert by_metric["cpu_util_pct"].threshold == 95
    assert by_metric["cpu_load_per_core"].severity == "CRITICAL"
    assert by_metric["p95_latency_ms"].metrics == ("p95_latency_ms", "p95_baseline_ms")
    assert [f.severity for f in found] == sorted(
        (f.severity for f in found), key=lambda s: ["CRITICAL", "HIGH", "MEDIUM", "LOW"].index(s)
    )


def test_thresholds_are_inclusive_and_levels_climb() -> None:
    rule = use_method.RULE_BY_METRIC["cpu_util_pct"]
    assert rule.severity(69.9) is None
    assert rule.severity(70) == ("MEDIUM", 70)
    assert rule.severity(85) == ("HIGH", 85)
    assert rule.severity(100) == ("CRITICAL", 95)


def test_roles_see_their_own_perspective() -> None:
    v = values("error-spike")
    security = {m for f in use_method.findings(v, "security") for m in f.metrics}
    cost = {m for f in use_method.findings(v, "cost") for m in f.metrics}
    assert "net_errors_per_s" in security and "request_rate_per_s" in security
    assert "error_rate_pct" not in cost


def test_healthy_host_gets_an_all_clear_not_an_empty_answer() -> None:
    answer = use_method.agent_answer(values("healthy"), "reliability")
    assert len(answer["findings"]) == 1
    assert answer["findings"][0]["severity"] == "LOW"
    assert "within its thresholds" in answer["findings"][0]["observation"]


def test_cost_agent_flags_over_provisioning() -> None:
    answer = use_method.agent_answer(values("healthy"), "cost")
    assert answer["findings"][0]["title"] == "Host looks over-provisioned"


def test_merge_groups_the_same_problem_across_agents() -> None:
    v = values("cpu-saturation")
    outputs = [(a.name, use_method.agent_answer(v, a.role)) for a in DEFAULT_ROSTER.specialists]
    merged = use_method.merge_findings(outputs)
    cpu = next(i for i in merged if i.metrics == ["cpu_util_pct"])
    assert set(cpu.agents) == {
        "PerformanceAnalyst", "InfrastructureExpert", "CostOptimizer", "ReliabilityEngineer",
    }  # fmt: skip
    assert cpu.confidence == 99  # 92 + 3 per extra agent, capped
    titles = [i.title for i in merged]
    assert len(titles) == len(set(titles))
    assert merged[0].severity == "CRITICAL"


def test_normalise_untrusted_model_output() -> None:
    raw = {
        "title": "  <b>x</b>   y ",
        "observation": "o" * 5000,
        "severity": "apocalyptic",
        "confidence": "97.5",
        "metrics": ["cpu_util_pct", "not_a_field", 3],
        "recommendations": ["do", "", None, 5],
    }
    ins = use_method.normalise_insight(raw, default_agents=["A"])
    assert ins is not None
    assert ins.title == "<b>x</b> y"  # kept as text; the UI never renders it as HTML
    assert len(ins.observation) == 600
    assert ins.severity == "MEDIUM" and ins.confidence == 97
    assert ins.metrics == ["cpu_util_pct"]
    assert ins.recommendations == ["do", "5"]
    assert ins.agents == ["A"]
    assert use_method.normalise_insight("nope") is None
    assert use_method.normalise_insight({"severity": "LOW"}) is None


def test_insights_from_checks_covers_every_scenario() -> None:
    for name in SCENARIOS:
        insights = use_method.insights_from_checks(values(name))
        assert insights and all(isinstance(i, Insight) and i.agents == [] for i in insights)


def test_grounding_lines_quote_the_numbers() -> None:
    lines = use_method.grounding_lines(values("memory-leak"), "reliability")
    assert any("mem_oom_kills = 3" in line and "CRITICAL" in line for line in lines)


# --- compact consolidation ------------------------------------------------------------


def outputs(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    v = values(name)
    return [
        (a.name, a.role, use_method.agent_answer(v, a.role)) for a in DEFAULT_ROSTER.specialists
    ]


def test_compact_findings_get_ids_by_role_and_place() -> None:
    found = use_method.compact_findings(outputs("cpu-saturation"))
    assert [f.id for f in found][:3] == ["P1", "P2", "P3"]
    assert {f.id[0] for f in found} <= set("PISCR")
    assert len({f.id for f in found}) == len(found)
    assert all(f.insight.agents and f.insight.recommendations for f in found)


def test_id_prefixes_stay_unique_for_roles_that_start_alike() -> None:
    answer = use_method.agent_answer(values("cpu-saturation"), "performance")
    found = use_method.compact_findings([("A", "perf", answer), ("B", "performance", answer)])
    assert len({f.id for f in found}) == len(found)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_simulated_verdict_gives_the_full_consolidations_insights(name: str) -> None:
    """The compact path (verdict + assembly from the agents' own findings) against the
    full consolidation the simulated Consolidator wrote before: the same insights."""
    outs = outputs(name)
    found = use_method.compact_findings(outs)
    verdict = use_method.read_verdict(use_method.verdict_for(found), (f.id for f in found))
    assert verdict is not None
    compact = use_method.assemble_insights(verdict, found)
    full = use_method.merge_findings([(agent, answer) for agent, _, answer in outs])
    assert [i.to_dict() for i in compact] == [i.to_dict() for i in full]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_agent_finding_appears_in_the_result(name: str) -> None:
    found = use_method.compact_findings(outputs(name))
    # A verdict that names a few findings, in an odd order, and merges unrelated ones.
    ids = [f.id for f in found]
    odd = {"insights": [[ids[-1], ids[0]], [ids[len(ids) // 2]]], "summary": "s", "confidence": 5}
    verdict = use_method.read_verdict(odd, ids)
    assert verdict is not None
    insights = use_method.assemble_insights(verdict, found)
    for f in found:
        holders = [
            i for i in insights
            if f.insight.agents[0] in i.agents and set(f.insight.metrics) <= set(i.metrics)
        ]  # fmt: skip
        assert holders, f"{f.id} ({f.insight.title}) is missing"
        assert set(f.insight.recommendations[:1]) <= {r for i in holders for r in i.recommendations}
    # The verdict's first insight comes first and holds both findings it named.
    assert {found[-1].insight.agents[0], found[0].insight.agents[0]} <= set(insights[0].agents)


def test_unnamed_findings_about_the_same_metrics_join_the_named_insight() -> None:
    found = use_method.compact_findings(outputs("cpu-saturation"))
    cpu = [f.id for f in found if f.insight.metrics == ["cpu_util_pct"]]
    verdict = use_method.read_verdict({"insights": [cpu[:1]]}, [f.id for f in found])
    assert verdict is not None
    insights = use_method.assemble_insights(verdict, found)
    cpu_insights = [i for i in insights if i.metrics == ["cpu_util_pct"]]
    assert len(cpu_insights) == 1 and len(cpu_insights[0].agents) == len(cpu)
    assert insights[0] is cpu_insights[0]


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"insights": "P1"},
        {"insights": [["Z9"], [3], "P1"]},
        {"insights": []},
    ],
)
def test_unusable_verdicts_are_none(raw: dict[str, Any]) -> None:
    assert use_method.read_verdict(raw, ["P1", "P2"]) is None


def test_verdict_drops_unknown_and_repeated_ids_and_bounds_text() -> None:
    raw = {"insights": [["P1", "Z9", "P1"], ["P1", "P2"]], "summary": "x" * 999, "confidence": 150}
    verdict = use_method.read_verdict(raw, ["P1", "P2"])
    assert verdict is not None
    assert verdict.groups == (("P1",), ("P2",))
    assert len(verdict.summary) == 200 and verdict.confidence == 100
    for odd in ("high", None, [90], float("nan")):
        assert use_method.read_verdict({"insights": [["P1"]], "confidence": odd}, ["P1"]) == (
            use_method.Verdict((("P1",),), "", None)
        )


def test_shared_grounding_names_the_roles_each_check_concerns() -> None:
    lines = use_method.shared_grounding_lines(values("error-spike"))
    assert any("error_rate_pct" in line and "[security, reliability]" in line for line in lines)
    healthy = use_method.shared_grounding_lines(values("healthy"))
    assert healthy == ["- LOW: cpu_util_pct, mem_util_pct = 23 (threshold 30) — Host looks "
                       "over-provisioned [cost]"]  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_merge_does_not_depend_on_who_answered_first(name: str) -> None:
    answers = [(agent, answer) for agent, _, answer in outputs(name)]
    forward = use_method.merge_findings(answers)
    assert use_method.merge_findings(answers[::-1]) == forward
    assert use_method.merge_findings(answers[2:] + answers[:2]) == forward


def test_oom_swap_and_memory_growth_are_one_memory_leak_insight() -> None:
    leak = {"mem_util_pct", "mem_swap_pct", "mem_oom_kills"}
    # the deterministic merge (the fallback) of the simulated agents' answers ...
    merged = use_method.merge_findings([(a, answer) for a, _, answer in outputs("memory-leak")])
    memory = [i for i in merged if set(i.metrics) & leak]
    assert len(memory) == 1, [i.title for i in memory]
    assert memory[0].title == "Memory leak: memory growth, swapping and OOM kills"
    assert leak <= set(memory[0].metrics)
    # ... the simulated Consolidator's verdict, which groups by the same rules ...
    found = use_method.compact_findings(outputs("memory-leak"))
    verdict = use_method.read_verdict(use_method.verdict_for(found), (f.id for f in found))
    assert verdict is not None
    assembled = use_method.assemble_insights(verdict, found)
    assert [i.title for i in assembled if set(i.metrics) & leak] == [memory[0].title]
    # ... and the checks alone, when no agent answered
    checks = use_method.insights_from_checks(values("memory-leak"))
    assert [i.title for i in checks if set(i.metrics) & leak] == [memory[0].title]


def test_a_quiet_hosts_perspectives_are_all_clear() -> None:
    merged = use_method.merge_findings([(a, answer) for a, _, answer in outputs("healthy")])
    clear = [i.title for i in merged if use_method.is_all_clear(i)]
    assert len(clear) == 3  # the performance one rests on the same metrics as infrastructure's
    assert [i.title for i in merged if not use_method.is_all_clear(i)] == [
        "Host looks over-provisioned"
    ]
