from __future__ import annotations

from engine import use_method
from engine.agents import DEFAULT_ROSTER
from engine.records import Insight
from engine.snapshot import SCENARIOS, scenario


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
