"""The runner against a fake backend that queues canned answers per agent.

Protocol-level behaviour against the simulated Ollama server is in test_integration.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from engine.records import AnalysisResult
from engine.run import use_method
from engine.run.agents import CONSOLIDATION_SCHEMA, DEFAULT_ROSTER
from engine.run.runner import ProgressEvent, RunSettings, run_analysis
from engine.run.tiers import tier_for
from engine.sources.snapshot import scenario
from tests.support.fakes import FakeBackend, Script

SPECIALISTS = [a.name for a in DEFAULT_ROSTER.specialists]
VALUES = scenario("cpu-saturation").quantised()


async def run(
    fake: FakeBackend, settings: RunSettings, progress: list[ProgressEvent] | None = None
) -> AnalysisResult:
    return await run_analysis(
        scenario("cpu-saturation"),
        DEFAULT_ROSTER,
        lambda: fake,
        settings,
        model="test-model",
        progress=progress.append if progress is not None else None,
    )


def status_of(result: AnalysisResult) -> dict[str, str]:
    return {a.name: a.status for a in result.agents}


@pytest.mark.parametrize(
    ("participated", "total", "tier"),
    [
        (5, 5, "excellent"),
        (4, 5, "good"),
        (3, 5, "good"),
        (2, 5, "basic"),
        (1, 5, "fallback"),
        (0, 5, "fallback"),
        (10, 10, "excellent"),
        (6, 10, "good"),
        (4, 10, "basic"),
        (3, 10, "fallback"),
        (1, 2, "fallback"),
    ],
)
def test_tier_by_fraction(participated: int, total: int, tier: str) -> None:
    assert tier_for(participated, total) == tier


async def test_all_agents_answer_excellent_with_llm_consolidation() -> None:
    fake = FakeBackend()
    result = await run(fake, RunSettings(quorum=5))
    assert result.status == "success"
    assert (result.tier, result.confidence) == ("excellent", 95)
    assert result.agents_participated == result.agents_total == 5
    assert result.missing_roles == []
    assert result.consolidation is not None and result.consolidation.method == "llm"
    assert result.insights[0].severity == "CRITICAL"
    assert all(i.confidence <= 95 for i in result.insights)
    assert fake.closed
    # agents first, then the consolidator, each exactly once
    assert sorted(fake.calls[:5]) == sorted(SPECIALISTS) and fake.calls[5] == "Consolidator"


async def test_json_contract_round_trips() -> None:
    result = await run(FakeBackend(), RunSettings())
    data = json.loads(json.dumps(result.to_dict()))
    for key in (
        "status", "mode", "backend", "snapshot_key", "tier", "confidence",
        "agents_participated", "agents_total", "missing_roles", "execution_time_s",
        "critical_path_s", "cache", "agents", "consolidation", "insights",
        "collaboration_summary",
    ):  # fmt: skip
        assert key in data
    assert set(data["backend"]) == {"kind", "url", "model", "simulated"}
    agent_keys = {
        "name", "role", "model", "status", "start_s", "end_s", "duration_s", "ttft_s",
        "queue_s", "load_s", "prefill_s", "decode_s", "prompt_tokens", "output_tokens",
        "response_chars", "error", "client_queue_s", "cached_tokens", "endpoint",
    }  # fmt: skip
    assert set(data["agents"][0]) == agent_keys
    assert set(data["consolidation"]) == agent_keys | {"method", "summary", "verdict_confidence"}
    assert data["critical_path_source"] == "server"  # the fake reports prefill and decode
    assert set(data["insights"][0]) == {
        "title", "observation", "recommendations", "severity", "confidence", "agents", "metrics",
    }  # fmt: skip
    assert AnalysisResult.from_dict(data) == result


async def test_hung_agent_times_out_without_delaying_others() -> None:
    fake = FakeBackend({"SecurityAnalyst": Script(hang=True)})
    result = await run(fake, RunSettings(quorum=5, agent_timeout_s=0.3))
    runs = {a.name: a for a in result.agents}
    assert runs["SecurityAnalyst"].status == "timeout"
    assert runs["SecurityAnalyst"].duration_s == pytest.approx(0.3, abs=0.15)
    others = [r for n, r in runs.items() if n != "SecurityAnalyst"]
    assert all(r.status == "ok" and r.end_s < 0.25 for r in others)
    assert (result.tier, result.missing_roles) == ("good", ["security"])
    assert fake.cancelled == ["SecurityAnalyst"]


async def test_quorum_cancels_straggler_after_grace() -> None:
    fake = FakeBackend({"CostOptimizer": Script(delay_s=5.0)})
    result = await run(fake, RunSettings(quorum=3, grace_s=0.05))
    assert status_of(result)["CostOptimizer"] == "cancelled"
    assert result.quorum_reached_s is not None
    assert result.execution_time_s < 2.0
    assert result.tier == "good" and result.missing_roles == ["cost"]
    assert "CostOptimizer" in fake.cancelled
    # the cancelled agent is not on the critical path
    assert result.critical_path_s < 1.0


async def test_quorum_of_all_waits_for_everyone() -> None:
    fake = FakeBackend({"CostOptimizer": Script(delay_s=0.2)})
    result = await run(fake, RunSettings(quorum=5, grace_s=0.0))
    assert set(status_of(result).values()) == {"ok"}
    assert result.critical_path_s >= 0.2


async def test_overlap_folds_late_answers_into_the_result() -> None:
    fake = FakeBackend(
        {
            "CostOptimizer": Script(delay_s=0.1),  # arrives while the consolidator works
            "ReliabilityEngineer": Script(delay_s=5.0),  # still running when it is done
            "Consolidator": Script(delay_s=0.4),
        }
    )
    result = await run(fake, RunSettings(quorum=3, overlap=True))
    statuses = status_of(result)
    assert statuses["CostOptimizer"] == "ok"
    assert statuses["ReliabilityEngineer"] == "cancelled"
    assert result.late_agents == ["CostOptimizer"]
    assert any("CostOptimizer" in i.agents for i in result.insights)
    assert result.agents_participated == 4 and result.tier == "good"
    assert "folded in late: CostOptimizer" in result.collaboration_summary


async def test_compact_consolidation_keeps_the_agents_own_findings() -> None:
    fake = FakeBackend()
    result = await run(fake, RunSettings(quorum=5))
    assert result.consolidation is not None and result.consolidation.method == "llm"
    assert result.consolidation.summary == "CPU utilisation is high"
    assert result.consolidation.verdict_confidence == 92
    answers = [
        (a.name, use_method.agent_answer(VALUES, a.role)) for a in DEFAULT_ROSTER.specialists
    ]
    full = use_method.merge_findings(answers)  # what the full consolidation answered
    expected = [(i.title, i.severity, i.metrics, sorted(i.agents)) for i in full]
    got = [(i.title, i.severity, i.metrics, sorted(i.agents)) for i in result.insights]
    assert got == expected


async def test_consolidation_prompt_lists_findings_in_arrival_order() -> None:
    fake = FakeBackend({"PerformanceAnalyst": Script(delay_s=0.15)})
    await run(fake, RunSettings(quorum=5))
    consolidation = next(r for r in fake.requests if r.agent == "Consolidator")
    ids = [line.split('"', 4)[3] for line in consolidation.user.splitlines() if '"id"' in line]
    assert ids[-1].startswith("P") and not any(i.startswith("P") for i in ids[:-3])
    systems = {r.system for r in fake.requests}
    assert systems == {DEFAULT_ROSTER.consolidator.system_prompt}  # one shared system prompt
    cost = next(r for r in fake.requests if r.agent == "CostOptimizer")
    assert cost.user.rstrip().endswith("recommendations each.")
    assert DEFAULT_ROSTER.specialists[3].instructions in cost.user


async def test_full_consolidation_has_the_consolidator_write_every_insight() -> None:
    fake = FakeBackend()
    result = await run(fake, RunSettings(quorum=5, consolidation="full"))
    assert result.consolidation is not None and result.consolidation.method == "llm"
    assert result.consolidation.summary is None
    consolidation = next(r for r in fake.requests if r.agent == "Consolidator")
    assert consolidation.schema == CONSOLIDATION_SCHEMA and '"answer"' in consolidation.user
    compact = await run(FakeBackend(), RunSettings(quorum=5))
    assert [i.to_dict() for i in result.insights] == [i.to_dict() for i in compact.insights]
    assert RunSettings().fingerprint() != RunSettings(consolidation="full").fingerprint()


async def test_unusable_verdict_falls_back_to_the_labelled_merge() -> None:
    fake = FakeBackend({"Consolidator": Script(content='{"insights": [["nobody"]]}')})
    result = await run(fake, RunSettings(quorum=5))
    assert result.consolidation is not None and result.consolidation.method == "fallback"
    assert result.consolidation.error == "consolidator's verdict named no finding"
    assert "by deterministic merge" in result.collaboration_summary
    assert any(i.metrics == ["cpu_util_pct"] and len(i.agents) >= 3 for i in result.insights)


async def test_fallback_merge_when_consolidator_fails() -> None:
    fake = FakeBackend({"Consolidator": Script(error="model 'big' not found")})
    result = await run(fake, RunSettings(quorum=5))
    assert result.consolidation is not None
    assert result.consolidation.method == "fallback"
    assert result.consolidation.error == "model 'big' not found"
    assert result.tier == "excellent"
    # useful content: the merge groups the same problem seen by several agents
    cpu = next(i for i in result.insights if i.metrics == ["cpu_util_pct"])
    assert cpu.severity == "CRITICAL" and len(cpu.agents) >= 3


async def test_fewer_than_two_answers_skip_the_consolidator() -> None:
    broken = {n: Script(error="boom") for n in SPECIALISTS[1:]}
    fake = FakeBackend(broken)
    result = await run(fake, RunSettings(quorum=3))
    assert result.agents_participated == 1
    assert (result.tier, result.confidence) == ("fallback", 60)
    assert result.consolidation is not None and result.consolidation.method == "fallback"
    assert "Consolidator" not in fake.calls
    assert result.insights and all(i.agents == ["PerformanceAnalyst"] for i in result.insights)


async def test_no_agent_answers_reports_error_with_rule_based_insights() -> None:
    fake = FakeBackend({n: Script(error="connection refused") for n in SPECIALISTS})
    result = await run(fake, RunSettings())
    assert result.status == "error"
    assert result.error is not None and "connection refused" in result.error
    assert result.tier == "fallback"
    assert result.insights[0].agents == []  # from the USE-method checks themselves
    assert result.insights[0].severity == "CRITICAL"


async def test_malformed_answer_is_an_agent_error() -> None:
    fake = FakeBackend({"CostOptimizer": Script(content="Sure! The host looks busy.")})
    result = await run(fake, RunSettings(quorum=5))
    cost = next(a for a in result.agents if a.name == "CostOptimizer")
    assert cost.status == "error" and cost.error is not None and "not JSON" in cost.error
    assert result.tier == "good"


async def test_fenced_answer_is_accepted() -> None:
    body = json.dumps({"summary": "s", "findings": []})
    fake = FakeBackend({"CostOptimizer": Script(content=f"Here you go:\n```json\n{body}\n```")})
    result = await run(fake, RunSettings(quorum=5))
    assert status_of(result)["CostOptimizer"] == "ok"


async def test_sequential_runs_one_agent_at_a_time() -> None:
    fake = FakeBackend({n: Script(delay_s=0.02) for n in SPECIALISTS})
    result = await run(fake, RunSettings(mode="sequential"))
    assert fake.peak_in_flight == 1
    starts = [a.start_s for a in result.agents]
    ends = [a.end_s for a in result.agents]
    assert all(s >= e - 1e-6 for s, e in zip(starts[1:], ends[:-1], strict=True))
    assert result.tier == "excellent"
    # one after another, the run could not avoid any of them
    assert result.consolidation is not None
    work = sum(a.work_s for a in result.agents) + result.consolidation.work_s
    assert result.critical_path_s == pytest.approx(work)


async def test_parallel_respects_concurrency_cap() -> None:
    fake = FakeBackend({n: Script(delay_s=0.05) for n in SPECIALISTS})
    result = await run(fake, RunSettings(quorum=5, max_concurrency=2))
    assert fake.peak_in_flight == 2
    assert result.tier == "excellent"


async def test_deadline_cancels_everything_left() -> None:
    fake = FakeBackend({n: Script(delay_s=5.0) for n in SPECIALISTS[2:]})
    result = await run(fake, RunSettings(quorum=5, deadline_s=0.3))
    statuses = status_of(result)
    assert [statuses[n] for n in SPECIALISTS[2:]] == ["cancelled"] * 3
    assert result.execution_time_s < 2.0
    assert result.tier == "basic"


async def test_sequential_deadline_skips_agents_not_started() -> None:
    fake = FakeBackend({n: Script(delay_s=0.2) for n in SPECIALISTS})
    result = await run(fake, RunSettings(mode="sequential", deadline_s=0.3, agent_timeout_s=5))
    statuses = status_of(result)
    assert statuses["PerformanceAnalyst"] == "ok"
    assert statuses["ReliabilityEngineer"] == "cancelled"
    assert "ReliabilityEngineer" not in fake.calls


async def test_single_mode_uses_the_generalist_only() -> None:
    fake = FakeBackend()
    result = await run(fake, RunSettings(mode="single"))
    assert fake.calls == ["Generalist"]
    assert (result.tier, result.confidence) == ("single", 85)
    assert result.consolidation is None and result.agents_total == 1
    assert result.insights[0].severity == "CRITICAL"


async def test_no_task_left_behind_and_backend_closed() -> None:
    fake = FakeBackend({"SecurityAnalyst": Script(hang=True), "CostOptimizer": Script(delay_s=9)})
    before = asyncio.all_tasks()
    await run(fake, RunSettings(quorum=3, grace_s=0.01, agent_timeout_s=5))
    assert asyncio.all_tasks() == before
    assert fake.closed and fake.in_flight == 0


async def test_cancelling_the_run_cancels_agents_and_closes_backend() -> None:
    fake = FakeBackend({n: Script(hang=True) for n in SPECIALISTS}, expected_calls=5)
    task = asyncio.create_task(run(fake, RunSettings()))
    await fake.all_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(fake.cancelled) == sorted(SPECIALISTS)
    assert fake.closed and fake.in_flight == 0


async def test_progress_events_per_agent() -> None:
    events: list[ProgressEvent] = []
    await run(FakeBackend(), RunSettings(quorum=5), events)
    for name in [*SPECIALISTS, "Consolidator"]:
        kinds = [e.kind for e in events if e.agent == name]
        assert kinds[:2] == ["queued", "started"] and kinds[-1] == "finished"
        assert "tokens" in kinds
    finished = [e for e in events if e.kind == "finished"]
    assert all(e.status == "ok" for e in finished)


async def test_broken_progress_callback_does_not_break_the_run() -> None:
    def explode(event: ProgressEvent) -> None:
        raise RuntimeError("ui gone")

    result = await run_analysis(
        scenario("healthy"), DEFAULT_ROSTER, FakeBackend, RunSettings(), model="m", progress=explode
    )
    assert result.status == "success"


async def test_per_agent_models_from_roster() -> None:
    from dataclasses import replace

    roster = replace(
        DEFAULT_ROSTER, consolidator=replace(DEFAULT_ROSTER.consolidator, model="big:70b")
    )
    result = await run_analysis(
        scenario("healthy"), roster, FakeBackend, RunSettings(), model="small:7b"
    )
    assert {a.model for a in result.agents} == {"small:7b"}
    assert result.consolidation is not None and result.consolidation.model == "big:70b"


def test_settings_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="quorum"):
        RunSettings(quorum=0)
    with pytest.raises(ValueError, match="agent timeout"):
        RunSettings(agent_timeout_s=0)
    with pytest.raises(ValueError, match="mode"):
        RunSettings(mode="turbo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^consolidation: must be one of compact, full"):
        RunSettings(consolidation="short")  # type: ignore[arg-type]


async def test_one_at_a_time_the_critical_path_is_every_agent_and_never_the_wall_plus() -> None:
    # max_concurrency 1: the parallel run waits for each agent in turn, as on a one-slot server.
    fake = FakeBackend({n: Script(delay_s=0.03) for n in SPECIALISTS})
    result = await run(fake, RunSettings(max_concurrency=1, quorum=5, warmup=False))
    assert fake.peak_in_flight == 1
    assert result.consolidation is not None
    work = sum(a.work_s for a in result.agents) + result.consolidation.work_s
    assert result.critical_path_s == pytest.approx(work, rel=0.05)
    assert result.critical_path_s <= result.execution_time_s


def test_a_warm_up_counts_on_the_path_only_until_the_consolidation_was_sent() -> None:
    """The consolidation was sent at 1.2 s while a warm-up ran on until 1.5 s: only the
    0.2 s between the last answer (1.0 s) and the send is a wait the run could not avoid;
    counting the warm-up's whole tail made the path longer than the wall."""
    from engine.records import AgentRun, ConsolidationRun
    from engine.run.critical_path import settled_warmup_s

    agents = [AgentRun("A", "r", "m", start_s=0.0, end_s=1.0, duration_s=1.0)]
    warmups = [AgentRun("warm", "r", "m", start_s=0.5, end_s=1.5, duration_s=1.0)]
    consolidation = ConsolidationRun("C", "r", "m", start_s=1.2, end_s=2.0, duration_s=0.8)
    assert settled_warmup_s(agents, warmups, consolidation) == pytest.approx(0.2)
    late = ConsolidationRun("C", "r", "m", start_s=1.6, end_s=2.0, duration_s=0.4)
    assert settled_warmup_s(agents, warmups, late) == pytest.approx(0.5)
    assert settled_warmup_s(agents, warmups, None) == 0.0
