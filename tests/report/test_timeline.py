"""engine.report.timeline: waterfall segments, critical agent, serialisation, slot advice."""

from __future__ import annotations

import itertools

import pytest

from engine.records import AgentRun, AnalysisResult
from engine.report.timeline import (
    CONSOLIDATION_LABEL,
    after_last_agent_s,
    chain_length_s,
    critical_agent,
    evaluated_tokens,
    makespan,
    projected_s,
    projection_scale,
    result_chain,
    segments,
    serialisation,
    slot_advice,
    timeline,
)
from tests.support.results import agent, make_result

# --- segments ---------------------------------------------------------------------------


def test_segments_lay_the_breakdown_end_to_end_from_the_start() -> None:
    run = agent("A", 1.0, 2.0, queue=0.5, load=0.25, prefill=0.25, decode=1.0)
    segs = segments(run)
    assert [s.kind for s in segs] == ["queue", "load", "prefill", "decode"]
    assert segs[0].start_s == 1.0
    for before, after in itertools.pairwise(segs):
        assert after.start_s == pytest.approx(before.end_s)
    assert sum(s.duration_s for s in segs) == pytest.approx(2.0)


def test_unexplained_time_becomes_other() -> None:
    run = agent("A", 0.0, 2.0, queue=0.0, load=0.1, prefill=0.2, decode=1.0)
    segs = segments(run)
    assert segs[-1].kind == "other"
    assert segs[-1].duration_s == pytest.approx(0.7)
    assert sum(s.duration_s for s in segs) == pytest.approx(2.0)


def test_a_server_report_longer_than_the_bar_is_scaled_to_fit() -> None:
    run = agent("A", 0.0, 1.0, queue=1.0, load=0.0, prefill=0.5, decode=0.5)
    segs = segments(run)
    assert sum(s.duration_s for s in segs) == pytest.approx(1.0)
    assert segs[0].duration_s == pytest.approx(0.5)  # proportions kept: 1 of 2 s → half
    assert "other" not in [s.kind for s in segs]


def test_no_breakdown_is_one_segment_for_the_whole_duration() -> None:
    run = agent("A", 0.4, 1.5, queue=None, load=None, prefill=None)
    assert segments(run) == segments(run)
    (only,) = segments(run)
    assert (only.kind, only.start_s, only.duration_s) == ("total", 0.4, 1.5)


def test_tiny_clock_noise_is_folded_into_the_last_segment() -> None:
    run = agent("A", 0.0, 1.00005, queue=0.0, load=0.0, prefill=0.5, decode=0.5)
    segs = segments(run)
    assert [s.kind for s in segs] == ["queue", "load", "prefill", "decode"]
    assert sum(s.duration_s for s in segs) == pytest.approx(1.00005)


# --- timeline ---------------------------------------------------------------------------


def test_timeline_has_a_row_per_agent_and_the_consolidation_last() -> None:
    result = make_result()
    tl = timeline(result)
    assert [r.label for r in tl.rows] == ["A", "B", "C", "D", "E", CONSOLIDATION_LABEL]
    assert tl.rows[-1].consolidation and tl.rows[-1].method == "llm"
    assert tl.quorum_reached_s == 2.5
    for row in tl.rows:
        assert sum(s.duration_s for s in row.segments) == pytest.approx(row.duration_s)


def test_critical_agent_is_the_slowest_waited_for_by_work() -> None:
    result = make_result()
    # D (cancelled, 3.5 s) was not waited for; B (3.0 s ok) beats C (2.8 s timeout).
    assert critical_agent(result) == "B"
    tl = timeline(result)
    assert [r.label for r in tl.rows if r.critical] == ["B", CONSOLIDATION_LABEL]


def test_every_waited_for_agent_is_critical_in_a_sequential_run() -> None:
    runs = [agent("A", 0.0, 1.0), agent("B", 1.0, 1.0), agent("C", 2.0, 1.0, status="error")]
    tl = timeline(make_result(mode="sequential", agents=runs))
    assert [r.label for r in tl.rows if r.critical] == ["A", "B", "C", CONSOLIDATION_LABEL]


def test_critical_agent_is_the_one_the_consolidation_waited_for_not_the_late_one() -> None:
    runs = [
        agent("A", 0.0, 4.0, queue=3.0, load=0.0, prefill=0.5),  # 1 s of work
        agent("B", 0.0, 2.0),
        agent("L", 0.0, 5.0),
    ]
    result = make_result(agents=runs, late=["L"])
    # A answered last of those waited for; its 3 s in the server's queue are not its work.
    assert critical_agent(result) == "A"
    assert [r.name for r in result_chain(result)] == ["A", "Consolidator"]
    assert chain_length_s(result_chain(result)) == pytest.approx(1.0 + 1.0)


def one_slot(names: list[str], each_s: float) -> list[AgentRun]:
    """Agents all asked at 0 on a one-slot server: each waits in Quorum's queue for the last."""
    runs = []
    for i, name in enumerate(names):
        run = agent(name, 0.0, (i + 1) * each_s)
        run.client_queue_s = i * each_s
        run.decode_s = each_s - 0.3  # load 0.1 + prefill 0.2 + decode: its own work
        runs.append(run)
    return runs


def test_on_one_slot_the_critical_path_is_every_agent_and_fits_the_wall() -> None:
    result = make_result(agents=one_slot(["A", "B", "C"], 1.0), consolidation_s=0.5)
    chain = result_chain(result)
    assert [r.name for r in chain] == ["A", "B", "C", "Consolidator"]
    assert chain_length_s(chain) == pytest.approx(3.5)
    assert chain_length_s(chain) <= result.execution_time_s + 1e-9
    assert [r.label for r in timeline(result).rows if r.critical] == [
        "A", "B", "C", CONSOLIDATION_LABEL,
    ]  # fmt: skip


def test_an_overlapped_consolidation_does_not_add_a_straggler_it_did_not_wait_for() -> None:
    # The consolidation starts at quorum (1.0 s) while B is still out; B then fails at 1.2 s.
    runs = [agent("A", 0.0, 1.0), agent("B", 0.0, 1.2, status="error")]
    result = make_result(agents=runs, consolidation_s=0.5, wall=1.5)
    assert result.consolidation is not None
    result.consolidation.start_s, result.consolidation.end_s = 1.0, 1.5
    chain = result_chain(result)
    assert [r.name for r in chain] == ["A", "Consolidator"]
    # the old "slowest agent + consolidation" was 1.2 + 0.5 = 1.7 s, longer than the wall
    assert chain_length_s(chain) == pytest.approx(1.5)
    assert chain_length_s(chain) <= result.execution_time_s


def test_critical_agent_none_when_every_agent_was_cancelled() -> None:
    runs = [agent("A", 0.0, 1.0, status="cancelled", queue=None, load=None, prefill=None)]
    assert critical_agent(make_result(agents=runs)) is None


# --- serialisation ----------------------------------------------------------------------


def test_a_server_that_queues_the_agents_serialised_the_run() -> None:
    # One slot: each agent waits for the ones before it (0, 1, 2, 3, 4 s of queue).
    runs = [agent(f"A{i}", 0.0, i + 1.0, queue=float(i), load=0.0, prefill=0.5) for i in range(5)]
    result = make_result(agents=runs, wall=6.0)
    info = serialisation(result)
    assert info.queued_s == pytest.approx(10.0)
    assert info.serialised
    assert info.share == pytest.approx(10.0 / 6.0)


def test_a_truly_parallel_run_is_not_serialised() -> None:
    assert not serialisation(make_result()).serialised


def test_a_sequential_run_is_never_called_serialised() -> None:
    runs = [agent(f"A{i}", 0.0, 2.0, queue=1.5, load=0.0, prefill=0.1) for i in range(5)]
    assert not serialisation(make_result(agents=runs, mode="sequential", wall=3.0)).serialised


def test_warmups_get_rows_before_the_consolidation_and_are_never_critical() -> None:
    result = make_result()
    warm = agent("Consolidator.warmup", 2.0, 0.4, queue=None, load=None, prefill=None)
    warm.role, warm.cached_tokens = "warm-up", 600
    result.warmups = [warm]
    rows = timeline(result).rows
    assert [r.label for r in rows][-2:] == ["Consolidation warm-up", "Consolidation"]
    warm_row = rows[-2]
    assert warm_row.warmup and not warm_row.critical and warm_row.cached_tokens == 600


def test_waiting_in_quorums_queue_is_its_own_segment() -> None:
    run = agent("A", 0.0, 3.0, queue=0.0, load=0.0, prefill=0.5, decode=1.0)
    run.client_queue_s = 1.5
    segs = segments(run)
    assert [s.kind for s in segs][:2] == ["wait", "queue"]
    assert segs[0].duration_s == 1.5 and segs[1].start_s == 1.5
    assert sum(s.duration_s for s in segs) == pytest.approx(3.0)
    silent = agent("B", 1.0, 2.0, queue=None, load=None, prefill=None)
    silent.client_queue_s = 0.5
    assert [(s.kind, s.start_s, s.duration_s) for s in segments(silent)] == [
        ("wait", 1.0, 0.5),
        ("total", 1.5, 1.5),
    ]


def one_slot_run() -> AnalysisResult:
    # Five agents of 2 s work each behind one slot: each waits for the ones before it.
    runs = []
    for i in range(5):
        run = agent(f"A{i}", 0.0, 2.0 * (i + 1), queue=0.0, load=0.0, prefill=0.5, decode=1.5)
        run.client_queue_s = 2.0 * i
        runs.append(run)
    result = make_result(agents=runs, consolidation_s=1.0)
    result.server_slots, result.server_slots_source = 1, "assumed 1: Ollama's default"
    return result


def test_makespan_places_the_longest_first() -> None:
    assert makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2) == 7.0
    assert makespan([1.0, 1.0], 5) == 1.0 and makespan([], 3) == 0.0


def with_curve(result: AnalysisResult, factors: tuple[float, ...], source: str) -> AnalysisResult:
    result.server_curve = {"prefill": list(factors), "decode": list(factors), "source": source}
    return result


def test_one_slot_advice_says_what_more_slots_would_give() -> None:
    full_speed = (1.0,) * 5  # a server whose slots do not slow each other down
    advice = slot_advice(with_curve(one_slot_run(), full_speed, "learned from 3 runs"))
    assert advice is not None and (advice.slots, advice.agents) == (1, 5)
    assert advice.wall_s == pytest.approx(11.0)
    assert advice.estimated_s == pytest.approx(3.0)  # one agent's 2 s, then the consolidation
    text = advice.sentence()
    assert "one at a time" in text and "≈ 3.0 s instead of 11.0 s" in text
    assert "OLLAMA_NUM_PARALLEL=5" in text and "Ollama's default" in text
    assert "(learned from 3 runs)" in text and advice.helps


def test_advice_on_a_server_whose_slots_share_compute_says_they_would_not_help() -> None:
    no_gain = (1.0, 0.5, 1 / 3, 0.25, 0.2)  # five at once: each a fifth as fast
    advice = slot_advice(with_curve(one_slot_run(), no_gain, "learned from 2 runs"))
    assert advice is not None and not advice.helps
    assert advice.estimated_s == pytest.approx(11.0)  # the same work, shared: no gain
    text = advice.sentence()
    assert "would not help" in text and "OLLAMA_NUM_PARALLEL=5" not in text
    assert "1.0× the throughput of one stream with 5 at once" in text
    # A batching server's published curve would give more: said in one sentence.
    assert "A batching server (vLLM, SGLang) would give more than more slots can" in text
    slower = (1.0, 0.4, 0.25, 0.18, 0.15)  # aggregate below one stream: slower than one slot
    worse = slot_advice(with_curve(one_slot_run(), slower, "learned"))
    assert worse is not None and "would slow it down" in worse.sentence()


def test_advice_without_a_learned_curve_says_which_curve_it_assumed() -> None:
    on_real = one_slot_run()
    on_real.simulated_profile = None  # a real server, no runs with several streams yet
    real = slot_advice(on_real)
    assert real is not None and "assumed: no run of this server" in real.curve_source
    simulated = one_slot_run()
    simulated.simulated_profile = "gpu"
    advice = slot_advice(simulated)
    assert advice is not None and advice.curve_source.startswith("the simulated gpu profile's")
    assert 3.0 < advice.estimated_s < 11.0  # shared GPU slots: better than one, not 5×


def test_no_advice_when_there_are_enough_slots_or_nobody_waited() -> None:
    enough = one_slot_run()
    enough.server_slots = 5
    assert slot_advice(enough) is None
    unknown = one_slot_run()
    unknown.server_slots = None
    assert slot_advice(unknown) is None
    quick = make_result()  # nobody waited
    quick.server_slots = 1
    assert slot_advice(quick) is None


# --- consolidation variants and the projection to real time --------------------------------


def test_after_the_last_agent_counts_from_the_last_answer_the_run_waited_for() -> None:
    # B (ok) ends at 3.0; D, a cancelled straggler, at 3.5; the run ends at 4.5.
    assert after_last_agent_s(make_result()) == pytest.approx(1.5)
    assert after_last_agent_s(make_result(wall=6.0)) == pytest.approx(3.0)
    nobody = make_result(agents=[agent("A", 0.0, 1.0, status="cancelled")])
    assert after_last_agent_s(nobody) == 0.0


def test_evaluated_tokens_subtract_the_cache_only_from_a_whole_prompt_count() -> None:
    run = agent("Consolidator", 0.0, 1.0)
    run.prompt_tokens, run.cached_tokens = 700, 600
    assert evaluated_tokens(run, "openai") == 100  # usage.prompt_tokens: the whole prompt
    assert evaluated_tokens(run, "simulated") == 700  # prompt_eval_count: evaluated only
    assert evaluated_tokens(run, "ollama") == 700
    run.cached_tokens = None
    assert evaluated_tokens(run, "openai") == 700
    run.prompt_tokens = None
    assert evaluated_tokens(run, "openai") is None


def test_projection_to_real_time_divides_by_the_time_scale() -> None:
    assert projected_s(0.75, 0.05) == pytest.approx(15.0)
    assert projected_s(3.7, 0.05) == pytest.approx(74.0)
    assert projected_s(2.0, 2.0) == pytest.approx(1.0)  # a slowed-down simulator too
    with pytest.raises(ValueError, match="time scale: must be > 0"):
        projected_s(1.0, 0.0)


def test_only_a_scaled_simulator_is_projected() -> None:
    assert projection_scale(simulated=True, time_scale=0.05) == 0.05
    assert projection_scale(simulated=True, time_scale=1.0) is None  # already real time
    assert projection_scale(simulated=False, time_scale=0.05) is None  # a real server
