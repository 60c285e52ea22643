"""Which stragglers are kept after the quorum: on course yes, hung or out of time no."""

from __future__ import annotations

from engine.records import AgentRun
from engine.run.stragglers import Norms, Progress, verdict

# The answered agents: first token within 0.5 s, ≈ 100 tokens, ≈ 2 s from dispatch.
NORMS = Norms(first_token_s=0.5, output_tokens=100, work_s=2.0)


def streaming(dispatched: float, first: float, last: float, tokens: int) -> Progress:
    return Progress(
        queued_s=0.0, dispatched_s=dispatched, first_token_s=first, last_token_s=last, tokens=tokens
    )


def test_norms_come_from_the_agents_that_answered() -> None:
    runs = [
        AgentRun("A", "r", "m", "ok", 0.0, 2.0, 2.0, ttft_s=0.4, output_tokens=90),
        AgentRun("B", "r", "m", "ok", 0.0, 3.0, 3.0, ttft_s=0.6, output_tokens=110,
                 client_queue_s=1.0),
        AgentRun("C", "r", "m", "timeout", 0.0, 9.0, 9.0, ttft_s=5.0, output_tokens=1),
    ]  # fmt: skip
    norms = Norms.of(runs)
    assert norms.first_token_s == 0.6  # the slowest first token among those that answered
    assert norms.output_tokens == 100
    assert norms.work_s == 2.0  # B's wait in our queue is not work


def test_queued_agent_is_kept_without_a_deadline() -> None:
    assert verdict(Progress(queued_s=0.0), 50.0, grace_s=2, deadline_s=None, norms=NORMS) is None


def test_queued_agent_is_kept_when_it_can_still_make_the_deadline() -> None:
    waiting = Progress(queued_s=0.0)
    assert verdict(waiting, 5.0, grace_s=2, deadline_s=7.5, norms=NORMS) is None
    why = verdict(waiting, 6.0, grace_s=2, deadline_s=7.5, norms=NORMS)
    assert why is not None and "deadline" in why and "queued" in why


def test_silent_agent_is_hung_after_twice_the_slowest_first_token_plus_grace_and_jitter() -> None:
    sent = Progress(queued_s=0.0, dispatched_s=10.0)
    assert verdict(sent, 10.0 + 3.2, grace_s=2, deadline_s=None, norms=NORMS) is None
    why = verdict(sent, 10.0 + 3.3, grace_s=2, deadline_s=None, norms=NORMS)
    assert why is not None and why.startswith("hung: no output")


def test_streaming_on_course_is_kept_even_when_slow() -> None:
    # 10 tokens/s, the last one just now: slow, but moving. No deadline: keep it.
    agent = streaming(0.0, 0.5, 5.0, 46)
    assert verdict(agent, 5.05, grace_s=0.1, deadline_s=None, norms=NORMS) is None


def test_streaming_that_stalls_is_hung() -> None:
    agent = streaming(0.0, 0.5, 1.5, 101)  # 100 tokens/s, then nothing for 3 s
    why = verdict(agent, 4.5, grace_s=2, deadline_s=None, norms=NORMS)
    assert why is not None and "mid-answer" in why and "101 tokens" in why


def test_streaming_projected_past_the_deadline_is_dropped_at_its_own_pace() -> None:
    agent = streaming(0.0, 1.0, 5.0, 41)  # 10 tokens/s, 59 to go ≈ 5.9 s more
    assert verdict(agent, 5.0, grace_s=1, deadline_s=12.0, norms=NORMS) is None
    why = verdict(agent, 5.0, grace_s=1, deadline_s=10.0, norms=NORMS)
    assert why is not None and "projected to finish at ≈ 10.9 s" in why


def test_an_agent_longer_than_the_norm_is_projected_from_its_own_length() -> None:
    # Already past the median length: it is expected to be nearly done, not dropped.
    agent = streaming(0.0, 0.2, 3.0, 150)
    assert verdict(agent, 3.0, grace_s=1, deadline_s=3.5, norms=NORMS) is None
