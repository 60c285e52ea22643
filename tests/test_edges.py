"""Reliability at the edges (issue 18): model text that is not valid Unicode, numbers at the
edge of float's range, and the deadline in every mode.

- the one sanitiser (`engine/sanitize.py`): what it guarantees, for any text at all;
- answers of arbitrary Unicode, surrogates included (`Cs`, which `st.text()` leaves out),
  through the real NDJSON and SSE decoders, the runner and then every renderer: the CLI's
  text, the JSON contract, the dashboard's helpers, the history and its exports;
- the CLI on a real loopback server whose answer holds `"\\ud800"`: first run and cached rerun;
- snapshots with arbitrary floats and integers in every field, and Prometheus samples;
- each mode with a deadline against a real loopback server that hangs.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import cli, sanitize
from engine.backends.base import Backend, ChatResult
from engine.backends.ollama import OllamaBackend, OllamaStream
from engine.backends.openai_compat import OpenAICompatBackend, OpenAIStream
from engine.backends.streaming import LineSplitter, ProtocolError
from engine.records import AnalysisResult, CacheInfo, Mode
from engine.run import use_method
from engine.run.agents import DEFAULT_ROSTER, agent_user_prompt
from engine.run.runner import MODES, RunSettings, run_analysis
from engine.service import SHARED_RUN
from engine.sources.prometheus import build_snapshot
from engine.sources.prometheus.answers import Sample, Target, field_value
from engine.sources.snapshot import (
    FIELDS,
    MAX_VALUE,
    SCENARIOS,
    Snapshot,
    SnapshotError,
    parse_json,
    scenario,
)
from engine.store.history import History, to_csv, to_json
from tests.support.chaos_server import ChaosServer, agent_answer, split_tokens
from tests.support.fakes import FakeBackend, Script
from ui import charts, render, safe

REPO = Path(__file__).resolve().parent.parent
SPECIALISTS = [s.name for s in DEFAULT_ROSTER.specialists]
CONSOLIDATOR = DEFAULT_ROSTER.consolidator.name

# Every general category, surrogates (Cs), controls, formats, private use and unassigned
# code points included.
ANY_CHAR = st.characters(categories=("L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co", "Cn"))
ANY_TEXT = st.text(ANY_CHAR, max_size=60)
# Text built to hit the edges: lone and paired surrogates, escape sequences, CR, bidi.
EDGY = st.sampled_from(
    ["\ud800", "\udfff", "\ud83d\ude00", "\ud83d", "\x1b[31m", "\x1b]0;title\x07", "\x1b",
     "\r", "\r\n", "\u202e", "\u2028", "\x00", "\x9b", "\t", "\n", "\ufeff", "\u200b"]
)  # fmt: skip
HOSTILE_TEXT = st.lists(ANY_TEXT | EDGY, max_size=6).map("".join)


def unsafe_chars(text: str, *, multiline: bool) -> list[str]:
    """What the sanitiser promises never to leave: surrogates, controls (but \\n and \\t
    in multi-line text), ESC, bidi overrides."""
    allowed = {"\n", "\t"} if multiline else set()
    return [
        ch
        for ch in text
        if ch not in allowed
        and (
            unicodedata.category(ch) in ("Cs", "Cc")
            or "\u202a" <= ch <= "\u202e"
            or "\u2066" <= ch <= "\u2069"
        )
    ]


# --- the sanitiser ---------------------------------------------------------------------------


def test_lone_surrogates_become_replacement_characters_and_pairs_are_joined() -> None:
    assert sanitize.text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert sanitize.text("\ud83d\ude00") == "😀"  # a pair split across two JSON escapes
    assert sanitize.text("x\ud83d").encode("utf-8") == "x\ufffd".encode()


def test_terminal_escape_sequences_are_removed_whole() -> None:
    assert sanitize.text("\x1b[1;31mred\x1b[0m text") == "red text"
    assert sanitize.text("\x1b]0;owned title\x07after") == "after"
    assert sanitize.text("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert sanitize.text("bell\x07 nul\x00 del\x7f c1\x9b") == "bell nul del c1"
    assert sanitize.text("safe\u202eexe.txt") == "safeexe.txt"


def test_text_keeps_newlines_and_tabs_and_line_flattens_them() -> None:
    assert sanitize.text("one\r\ntwo\rthree\u2028four\tfive") == "one\ntwo\nthree\nfour\tfive"
    assert sanitize.line("  one\r\n\ttwo \u200b three  ") == "one two three"


def test_length_is_capped_with_an_ellipsis() -> None:
    assert sanitize.text("x" * 5000, limit=100) == "x" * 99 + "…"
    assert len(sanitize.line("y " * 5000, limit=50)) == 50


def test_the_dashboard_uses_the_engine_sanitiser() -> None:
    hostile = "a\ud800 \x1b[31mred\x1b[0m\nb"
    assert safe.clean(hostile) == sanitize.line(hostile) == "a\ufffd red b"


@settings(max_examples=300, deadline=None)
@given(HOSTILE_TEXT, st.integers(min_value=1, max_value=80))
def test_sanitised_text_is_always_encodable_inert_capped_and_stable(raw: str, limit: int) -> None:
    for clean, multiline in ((sanitize.text(raw, limit=limit), True), (sanitize.line(raw), False)):
        clean.encode("utf-8")  # strict: would raise on a surrogate
        assert not unsafe_chars(clean, multiline=multiline), repr(clean)
    assert len(sanitize.text(raw, limit=limit)) <= limit
    assert "\n" not in sanitize.line(raw) and sanitize.line(raw).isprintable()
    once = sanitize.text(raw, limit=limit)
    assert sanitize.text(once, limit=limit) == once
    assert sanitize.line(sanitize.line(raw)) == sanitize.line(raw)


# --- arbitrary answers: the stream parsers, the runner, every renderer -------------------------


def ndjson_line(piece: str, *, ascii_only: bool) -> bytes:
    obj = {"model": "m", "message": {"role": "assistant", "content": piece}, "done": False}
    return (json.dumps(obj, ensure_ascii=ascii_only) + "\n").encode("utf-8", "surrogatepass")


def sse_event(piece: str, *, ascii_only: bool) -> bytes:
    obj = {"choices": [{"index": 0, "delta": {"content": piece}}]}
    return f"data: {json.dumps(obj, ensure_ascii=ascii_only)}\n\n".encode("utf-8", "surrogatepass")


def decode_stream(protocol: str, answer: str, rng: random.Random, ascii_only: bool) -> ChatResult:
    """`answer` as a server streams it (in pieces, each JSON-escaped on its own, so a
    surrogate pair can be split across two escapes), read back in arbitrary reads."""
    pieces = split_tokens(answer, size=rng.randint(1, 12))
    if protocol == "ollama":
        decoder: OllamaStream | OpenAIStream = OllamaStream()
        body = b"".join(ndjson_line(p, ascii_only=ascii_only) for p in pieces)
        body += b'{"done": true, "done_reason": "stop", "eval_count": 3}\n'
    else:
        decoder = OpenAIStream()
        body = b"".join(sse_event(p, ascii_only=ascii_only) for p in pieces)
        body += b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
        body += b"data: [DONE]\n\n"
    splitter, at = LineSplitter(), 0
    while at < len(body):
        step = rng.randint(1, 64)
        for line in splitter.feed(body[at : at + step]):
            decoder.feed_line(line)
        at += step
    for line in splitter.end():
        decoder.feed_line(line)
    decoder.end()
    return decoder.result(ttft_s=0.01, elapsed_s=0.02)


@st.composite
def model_answers(draw: st.DrawFn) -> str:
    """An agent's answer: JSON of the agents' schema with hostile text in every string
    (and NaN / huge numbers where numbers go), or hostile prose."""
    if not draw(st.booleans()):
        return draw(HOSTILE_TEXT)
    finding = {
        "title": draw(HOSTILE_TEXT),
        "observation": draw(HOSTILE_TEXT),
        "recommendations": draw(st.lists(HOSTILE_TEXT, max_size=3)),
        "severity": draw(st.sampled_from(["HIGH", "CRITICAL"]) | HOSTILE_TEXT),
        "confidence": draw(st.integers() | st.floats() | HOSTILE_TEXT),
        "metrics": draw(st.lists(st.sampled_from(["cpu_util_pct"]) | HOSTILE_TEXT, max_size=2)),
    }
    return json.dumps(
        {"summary": draw(HOSTILE_TEXT), "findings": [finding]},
        ensure_ascii=draw(st.booleans()),
    )


def verdict_answer(summary: str) -> str:
    groups = [[f"{letter}1"] for letter in "PISCR"]
    return json.dumps({"insights": groups, "summary": summary, "confidence": 90})


def render_everywhere(result: AnalysisResult, data_dir: Path) -> None:
    """Every renderer a result meets; each must give text a strict UTF-8 encoder takes."""
    cli.format_result(result).encode("utf-8")
    contract = json.dumps(result.to_dict(), ensure_ascii=False)
    contract.encode("utf-8")
    assert AnalysisResult.from_dict(json.loads(contract)).to_dict() == result.to_dict()
    history = History(data_dir / "history.jsonl")
    history.append(result)
    loaded = history.load()
    assert len(loaded) == 1 and history.degraded is None
    to_json(loaded).encode("utf-8")
    to_csv(loaded).encode("utf-8")
    for text in (
        render.cache_label(result, 300.0),
        render.timing_caption(result),
        render.slots_text(result),
        render.tier_text(result),
        render.agents_text(result),
    ):
        text.encode("utf-8")
    for insight in result.insights:
        for text in (insight.title, insight.observation, *insight.recommendations):
            safe.md(text).encode("utf-8")
            safe.plotly(text).encode("utf-8")
        for metric in insight.metrics:
            render.metric_text(metric, None).encode("utf-8")
    charts.waterfall(result).to_json().encode("utf-8")


def assert_stored_text_is_safe(result: AnalysisResult) -> None:
    """Nothing unsafe in what the cache and history store: walk every string."""

    def walk(value: Any) -> None:
        if isinstance(value, str):
            assert not unsafe_chars(value, multiline=True), repr(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, float):
            assert math.isfinite(value), value

    walk(result.to_dict())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(
    st.sampled_from(["ollama", "openai"]),
    model_answers(),
    HOSTILE_TEXT,
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_any_answer_through_the_parsers_gives_a_result_every_renderer_takes(
    protocol: str, answer: str, summary: str, ascii_only: bool, rng: random.Random
) -> None:
    try:
        streamed = decode_stream(protocol, answer, rng, ascii_only)
    except ProtocolError as exc:  # the decoders' one-line protocol error, nothing else
        assert "\n" not in str(exc)
        return
    fake = FakeBackend(
        {
            "PerformanceAnalyst": Script(content=streamed.content),
            CONSOLIDATOR: Script(content=verdict_answer(summary)),
        }
    )
    result = asyncio.run(
        run_analysis(
            scenario("cpu-saturation"), DEFAULT_ROSTER, lambda: fake, RunSettings(quorum=5),
            model="m",
        )
    )  # fmt: skip
    assert_stored_text_is_safe(result)
    with tempfile.TemporaryDirectory() as tmp:
        render_everywhere(result, Path(tmp))


def test_a_surrogate_in_an_answer_is_replaced_before_it_is_stored() -> None:
    answer = agent_answer("PerformanceAnalyst")
    answer["findings"][0]["title"] = "CPU \ud800 \x1b[2Jhot"
    fake = FakeBackend(
        {
            "PerformanceAnalyst": Script(content=json.dumps(answer)),
            CONSOLIDATOR: Script(content=verdict_answer("merged \udfff\x1b]0;x\x07")),
        }
    )
    result = asyncio.run(
        run_analysis(
            scenario("cpu-saturation"), DEFAULT_ROSTER, lambda: fake, RunSettings(quorum=5),
            model="m",
        )
    )  # fmt: skip
    assert result.consolidation is not None and result.consolidation.method == "llm"
    assert result.consolidation.summary == "merged \ufffd"
    assert "CPU \ufffd hot" in [i.title for i in result.insights]


# --- the CLI on a real loopback server ----------------------------------------------------------


def run_cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`python -m engine` in a child process, its stdout a pipe (UTF-8, strict), as a
    user's redirect would be."""
    env = {**os.environ, "QUORUM_DATA_DIR": str(data_dir), "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cli_text_output_survives_a_lone_surrogate_first_run_and_cached_rerun(
    tmp_path: Path,
) -> None:
    answer = agent_answer("PerformanceAnalyst")
    answer["findings"][0]["observation"] = "lone \ud800 surrogate, \x1b[31mred\x1b[0m"
    answers = {
        "PerformanceAnalyst": json.dumps(answer),  # "\ud800" as a JSON escape, as issue 18 has it
        CONSOLIDATOR: verdict_answer("merged \udbff"),
    }
    with ChaosServer(answers=answers) as server:
        args = ["analyze", "--backend", "ollama", "--base-url", server.url, "--model", "m",
                "--server-slots", "5", "--scenario", "cpu-saturation"]  # fmt: skip
        first = run_cli(args, tmp_path)
        again = run_cli(args, tmp_path)
    for run in (first, again):
        assert run.returncode == 0, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
        assert "lone \ufffd surrogate, red" in run.stdout
        assert "Consolidator's verdict: merged \ufffd" in run.stdout
    assert "fresh run" in first.stdout and "cache hit" in again.stdout
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".jsonl") for p in stored), stored
    for path in stored:  # the cache (sqlite) and the history: no surrogate, no ESC, any form
        data = path.read_bytes()
        for bad in (b"\\ud800", b"\\udbff", b"\xed\xa0\x80", b"\\u001b[31m", b"\x1b[31m"):
            assert bad not in data, f"{path.name} holds {bad!r}"


# --- numbers at their edges -----------------------------------------------------------------------

NUMBERS = st.floats() | st.integers() | st.integers(min_value=-(10**400), max_value=10**400)


def good_snapshot() -> dict[str, Any]:
    return {**SCENARIOS["healthy"], "host": "web-1", "cpu_count": 4, "timestamp": 1.0}


def analyse_offline(snap: Snapshot) -> None:
    """What a run does with a snapshot before any server is asked, and the page's tiles."""
    values = snap.quantised()
    assert all(v is None or math.isfinite(v) for v in values.values())
    snap.cache_key()
    for spec in DEFAULT_ROSTER.specialists:
        agent_user_prompt(spec.role, values, spec.instructions).encode("utf-8")
    use_method.insights_from_checks(values)
    before = scenario("healthy")
    for field in FIELDS:
        now = snap.metric(field.name)
        render.format_value(field, now)
        render.format_delta(field, now, before.metric(field.name))
        render.metric_text(field.name, snap)


def snapshot_or_one_line(data: dict[str, Any]) -> None:
    try:
        snap = parse_json(json.dumps(data))
    except SnapshotError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 400 and exc.field, str(exc)
        return
    analyse_offline(snap)


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({f.name: NUMBERS for f in FIELDS}), NUMBERS, NUMBERS)
def test_any_numbers_in_every_field_give_a_snapshot_or_one_line(
    values: dict[str, Any], timestamp: Any, cpu_count: Any
) -> None:
    snapshot_or_one_line({**values, "host": "h", "timestamp": timestamp, "cpu_count": cpu_count})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([f.name for f in FIELDS] + ["timestamp", "cpu_count"]), NUMBERS)
def test_any_number_in_any_one_field_gives_a_snapshot_or_one_line(name: str, value: Any) -> None:
    snapshot_or_one_line({**good_snapshot(), name: value})


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            f.name: st.floats(min_value=f.minimum, max_value=f.upper)
            | st.integers(min_value=int(f.minimum), max_value=int(f.upper))
            for f in FIELDS
        }
    )
)
def test_every_value_up_to_the_largest_accepted_is_analysable(values: dict[str, Any]) -> None:
    analyse_offline(parse_json(json.dumps({**values, "host": "h", "timestamp": 1.0})))


@pytest.mark.parametrize("raw", ["1e308", "1.7976931348623157e308", "1e16", "9" * 300])
def test_edge_numbers_in_a_field_without_a_maximum_are_one_line(raw: str) -> None:
    data = json.dumps(good_snapshot()).replace(
        '"cpu_load_per_core": 0.3', f'"cpu_load_per_core": {raw}'
    )
    with pytest.raises(SnapshotError) as caught:
        parse_json(data)
    assert caught.value.field == "cpu_load_per_core"
    assert str(caught.value).startswith("cpu_load_per_core: must be ")


def test_cli_rejects_1e308_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge.json"
    path.write_text(json.dumps({**good_snapshot(), "disk_queue_depth": 1e308}))
    code = cli.main(["analyze", "--snapshot", str(path), "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == f"error: snapshot disk_queue_depth: must be ≤ {MAX_VALUE:g}, got 1e+308\n"


TARGET = Target(instance="node:9100", job="node", health="up", last_error="")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([f.name for f in FIELDS]), st.floats() | st.sampled_from([1e308, -1e308]))
def test_any_prometheus_sample_is_a_value_or_unknown_with_a_warning(
    name: str, value: float
) -> None:
    reading = field_value(name, [Sample({}, value)])
    if reading.value is None:
        assert reading.problem and "\n" not in reading.problem
    else:
        snap = build_snapshot({name: reading.value}, TARGET, cores=4, host="h")
        analyse_offline(snap)


def test_prometheus_1e308_is_unknown_with_a_warning() -> None:
    reading = field_value("request_rate_per_s", [Sample({}, 1e308)])
    assert reading.value is None
    assert reading.problem == f"value 1e+308 is beyond {MAX_VALUE:g} /s, the most a field takes"


def test_prometheus_labels_are_sanitised_into_the_snapshot() -> None:
    target = Target(instance="node\x1b[31m:9100\ud800", job="node", health="up", last_error="")
    snap = build_snapshot({}, target, cores=10**30, host="host\u202e\n1")
    assert snap.host == "host 1" and snap.source == "prometheus:node:9100\ufffd"
    assert snap.cpu_count == 1


# --- the deadline in every mode, against a real server that hangs --------------------------------

SLACK_S = 0.5
HANGS = ("hang_headers", "hang_mid", "slow_drip")


def backend_for(protocol: str, url: str) -> Callable[[], Backend]:
    if protocol == "ollama":
        return lambda: OllamaBackend(url, max_connections=8)
    return lambda: OpenAICompatBackend(url + "/v1", api_key="sk-edge", max_connections=8)


def run_with_deadline(
    mode: Mode, protocol: str, faults: dict[str, str], deadline_s: float, **settings: Any
) -> tuple[AnalysisResult, float]:
    run_settings = RunSettings(
        mode=mode, deadline_s=deadline_s, agent_timeout_s=10.0, grace_s=5.0, **settings
    )

    async def run() -> tuple[AnalysisResult, float]:
        before = asyncio.all_tasks()
        started = time.perf_counter()
        result = await run_analysis(
            scenario("cpu-saturation"), DEFAULT_ROSTER, backend_for(protocol, server.url),
            run_settings, model="m",
        )  # fmt: skip
        wall = time.perf_counter() - started
        assert asyncio.all_tasks() == before, "a task outlived the run"
        return result, wall

    with ChaosServer(faults) as server:
        result, wall = asyncio.run(run())
        assert server.wait_idle(5.0), "a connection outlived the run"
    return result, wall


def check_deadline(
    result: AnalysisResult, wall: float, deadline_s: float, faults: dict[str, str]
) -> None:
    assert wall <= deadline_s + SLACK_S, (
        f"{result.mode}: {wall:.2f} s for a {deadline_s:g} s deadline"
    )
    calls = list(result.agents)
    if result.consolidation is not None:
        calls.append(result.consolidation)
    for run in calls:
        merged = getattr(run, "method", "") == "fallback" and run.status == "ok"
        if run.name in faults and not merged:  # asked, never answers: cut, with a reason
            assert run.status in ("cancelled", "timeout"), (run.name, run.status, run.error)
        if run.status != "ok":
            assert run.error and "\n" not in run.error, (run.name, run.status)
        if run.status == "cancelled":  # the deadline, or (overlap) no longer needed
            assert (run.error or "").startswith("cancelled"), (run.name, run.error)


@pytest.mark.parametrize("mode", MODES)
def test_deadline_bounds_every_mode_against_a_server_that_never_answers(mode: Mode) -> None:
    # issue 18: --deadline 3 --agent-timeout 10, no headers ever: sequential and single took 10.3 s
    faults = dict.fromkeys([*SPECIALISTS, "Generalist", CONSOLIDATOR], "hang_headers")
    result, wall = run_with_deadline(mode, "ollama", faults, 1.5)
    check_deadline(result, wall, 1.5, faults)
    for run in result.agents:
        assert run.status == "cancelled" and "deadline" in (run.error or ""), run
    assert result.status == "error" and result.tier == "fallback"
    assert result.insights, "the rule-based insights are still given"


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_deadline_cuts_a_consolidator_that_hangs(mode: Mode) -> None:
    faults = {CONSOLIDATOR: "hang_mid"}
    deadline = 2.0 if mode == "parallel" else 3.0
    result, wall = run_with_deadline(mode, "openai", faults, deadline, quorum=5)
    check_deadline(result, wall, deadline, faults)
    assert result.consolidation is not None
    assert result.consolidation.method == "fallback", "the deterministic merge stands in"
    assert all(r.status == "ok" for r in result.agents)


@settings(max_examples=3, deadline=None)
@given(
    st.sampled_from(["ollama", "openai"]),
    st.dictionaries(
        st.sampled_from([*SPECIALISTS, "Generalist", CONSOLIDATOR]),
        st.sampled_from(HANGS),
        min_size=1,
    ),
    st.floats(min_value=0.3, max_value=1.2),
    st.booleans(),
)
@pytest.mark.parametrize("mode", MODES)
def test_any_mode_with_hanging_agents_ends_by_its_deadline(
    mode: Mode, protocol: str, faults: dict[str, str], deadline_s: float, overlap: bool
) -> None:
    result, wall = run_with_deadline(mode, protocol, faults, deadline_s, overlap=overlap)
    check_deadline(result, wall, deadline_s, faults)


def test_cli_sequential_deadline_holds(tmp_path: Path) -> None:
    with ChaosServer(dict.fromkeys(SPECIALISTS, "hang_headers")) as server:
        run = run_cli(
            ["analyze", "--backend", "ollama", "--base-url", server.url, "--model", "m",
             "--server-slots", "5", "--scenario", "cpu-saturation", "--mode", "sequential",
             "--deadline", "1.5", "--agent-timeout", "10", "--no-cache", "--json"],
            tmp_path,
        )  # fmt: skip
    assert run.returncode == 1, run.stderr[-2000:]  # no agent answered: the run's status
    result = json.loads(run.stdout)
    assert result["execution_time_s"] <= 1.5 + SLACK_S
    statuses = [a["status"] for a in result["agents"]]
    assert statuses == ["cancelled"] * len(SPECIALISTS), statuses
    assert "deadline" in result["agents"][0]["error"]


# --- the Live page's status box: its last word, however the run ended ---------------------------


class FakeStatus:
    """An `st.status` stand-in recording its labels; `raise_once` raises on the next write,
    as Streamlit raises a pending rerun from the next st.* call."""

    def __init__(self, label: str, raise_once: BaseException | None = None, **_: Any) -> None:
        self.labels = [label]
        self.raise_once = raise_once

    def update(self, *, label: str, **_: Any) -> None:
        if self.raise_once is not None:
            exc, self.raise_once = self.raise_once, None
            raise exc
        self.labels.append(label)

    def empty(self) -> Any:
        return self

    def text(self, _: str) -> None:
        if self.raise_once is not None:
            exc, self.raise_once = self.raise_once, None
            raise exc


class FakeSlot:
    def __init__(self, raise_once: BaseException | None = None) -> None:
        self.boxes: list[FakeStatus] = []
        self.raise_once = raise_once

    def status(self, label: str, **kwargs: Any) -> FakeStatus:
        box = FakeStatus(label, self.raise_once)
        self.raise_once = None
        self.boxes.append(box)
        return box

    def empty(self) -> None:  # `st.empty().empty()`: the slot holds nothing now
        self.boxes.append(FakeStatus("(empty)"))


def rerun_request() -> BaseException:
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

    return RerunException(RerunData())


def finished_result(*, hit: bool) -> AnalysisResult:
    fake = FakeBackend()
    result = asyncio.run(
        run_analysis(scenario("healthy"), DEFAULT_ROSTER, lambda: fake, RunSettings(), model="m")
    )
    result.cache = CacheInfo(hit=hit, age_s=0.0 if hit else None)
    return result


def test_a_run_served_by_another_pages_run_says_how_it_ended() -> None:
    # Before: the engine's single-flight gave the waiting caller no event, so its box
    # was never drawn and the run said nothing (the soak's 3 in 494).
    from engine.run.runner import ProgressEvent

    slot = FakeSlot()
    progress = render.LiveProgress(slot, min_redraw_s=0.0)
    progress(ProgressEvent(SHARED_RUN, "waiting", 0.0))
    progress.close(finished_result(hit=True))
    (box,) = slot.boxes
    assert box.labels[-1].startswith("Analysis finished in")
    assert box.labels[-1].endswith("the same analysis, run for another page")


def test_a_cache_hit_draws_no_box() -> None:
    slot = FakeSlot()
    render.LiveProgress(slot).close(finished_result(hit=True))
    assert slot.boxes == []  # its badge says "cached · N s old"


def test_queued_agents_are_not_counted_as_done() -> None:
    from engine.run.runner import ProgressEvent

    slot = FakeSlot()
    progress = render.LiveProgress(slot, min_redraw_s=0.0)
    progress(ProgressEvent("A", "queued", 0.0))
    progress(ProgressEvent("B", "queued", 0.0))
    assert slot.boxes[0].labels[-1] == "Analysing… agents 0/2 done, 0 running, 2 waiting for a slot"


def test_a_caller_of_an_analysis_under_way_is_told_it_waits(tmp_path: Path) -> None:
    """Two callers of one analysis at once: the second waits for the first one's run
    (single-flight) and gets a "waiting" event; no sleep, the first holds on until then."""
    import threading

    from engine.run.runner import ProgressEvent
    from engine.service import BackendConfig, Engine
    from engine.simulator import SimConfig

    engine = Engine(BackendConfig(sim=SimConfig(time_scale=0.01)))
    settings_ = RunSettings(agent_timeout_s=10.0)
    second: list[ProgressEvent] = []
    waiting = threading.Event()
    results: list[AnalysisResult] = []

    def follower() -> None:
        def seen(event: ProgressEvent) -> None:
            second.append(event)
            waiting.set()

        results.append(engine.analyze(scenario("healthy"), settings_, progress=seen))

    thread = threading.Thread(target=follower)

    def leader_progress(event: ProgressEvent) -> None:
        if not thread.is_alive() and not waiting.is_set():
            thread.start()
            assert waiting.wait(10.0), "the second caller never said it waits"

    first = engine.analyze(scenario("healthy"), settings_, progress=leader_progress)
    thread.join(10.0)
    assert [e.kind for e in second] == ["waiting"] and second[0].agent == SHARED_RUN
    assert results and results[0].insights == first.insights and results[0].cache.hit


def test_a_run_interrupted_mid_analysis_does_not_keep_saying_analysing() -> None:
    from engine.run.runner import ProgressEvent

    slot = FakeSlot()
    progress = render.LiveProgress(slot, min_redraw_s=0.0)
    progress(ProgressEvent("A", "started", 0.0))
    slot.boxes[0].raise_once = rerun_request()
    with pytest.raises(BaseException, match="RerunData"):
        progress(ProgressEvent("A", "finished", 1.0, status="timeout"))
    progress.close(None)
    assert slot.boxes[0].labels[-1] == render.INTERRUPTED_LABEL


def test_a_rerun_raised_by_the_last_write_itself_still_leaves_the_last_word() -> None:
    from engine.run.runner import ProgressEvent

    slot = FakeSlot()
    progress = render.LiveProgress(slot, min_redraw_s=0.0)
    progress(ProgressEvent("A", "started", 0.0))
    slot.boxes[0].raise_once = rerun_request()  # the request lands as the run ends
    with pytest.raises(BaseException, match="RerunData"):
        progress.close(finished_result(hit=False))
    assert slot.boxes[0].labels[-1] == render.INTERRUPTED_LABEL
    assert not slot.boxes[0].labels[-1].startswith("Analysing")
    assert progress.last_word == (render.INTERRUPTED_LABEL, "error")  # the next run redraws it


def test_streamlit_drops_a_runs_unsent_writes_when_the_next_run_starts() -> None:
    """The cause of the soak's stale "Analysing…" (issue 18), pinned on Streamlit itself:
    when the next run starts, what the run before wrote but the server had not yet sent is
    discarded (all of it for a full rerun, the fragment's for a fragment rerun)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    def delta(fragment: str, at: int) -> ForwardMsg:
        msg = ForwardMsg()
        msg.metadata.delta_path[:] = [0, at]
        msg.delta.new_element.markdown.body = "Analysis finished in 1.0 s (5/5 agents)"
        msg.delta.fragment_id = fragment
        return msg

    finished = ForwardMsg()
    finished.script_finished = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
    for fragment_ids in (["live"], None):  # a fragment rerun, then a full rerun
        queue = ForwardMsgQueue()
        queue.enqueue(delta("live", 0))
        queue.enqueue(finished)
        queue.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=fragment_ids)
        assert [m.WhichOneof("type") for m in queue.flush()] == ["script_finished"]
    # What the Live page relies on: a rerun of its timer's fragment keeps the panel's writes.
    queue = ForwardMsgQueue()
    queue.enqueue(delta("live", 0))
    queue.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=["timer"])
    assert [m.delta.fragment_id for m in queue.flush()] == ["live"]


def test_the_next_run_draws_the_last_word_again_before_its_own_box() -> None:
    from engine.run.runner import ProgressEvent

    slot = FakeSlot()
    first = render.LiveProgress(slot, min_redraw_s=0.0)
    first(ProgressEvent("A", "started", 0.0))
    first.close(finished_result(hit=False))
    assert first.last_word is not None and first.last_word[0].startswith("Analysis finished")
    slot = FakeSlot()
    second = render.LiveProgress(slot, min_redraw_s=0.0, previous=first.last_word)
    second.show_previous()
    assert [b.labels for b in slot.boxes] == [[first.last_word[0]]]
    second(ProgressEvent("A", "started", 0.0))  # its own box replaces it (`st.empty`)
    assert slot.boxes[-1].labels[-1].startswith("Analysing…")
    second.close(None)
    assert second.last_word == ("Analysis failed", "error")


def test_a_cache_hit_clears_the_redrawn_box_and_leaves_no_last_word() -> None:
    slot = FakeSlot()
    progress = render.LiveProgress(slot, previous=("Analysis finished in 1.0 s", "complete"))
    progress.show_previous()
    progress.close(finished_result(hit=True))
    assert [b.labels[-1] for b in slot.boxes] == ["Analysis finished in 1.0 s", "(empty)"]
    assert progress.last_word is None


def test_a_drawing_bug_stops_the_lines_but_not_the_last_word() -> None:
    from engine.run.runner import ProgressEvent

    slot = FakeSlot()
    progress = render.LiveProgress(slot, min_redraw_s=0.0)
    progress(ProgressEvent("A", "started", 0.0))
    slot.boxes[0].raise_once = ValueError("a bug while drawing")
    with pytest.raises(ValueError):
        progress(ProgressEvent("A", "finished", 1.0, status="ok"))
    progress(ProgressEvent("B", "finished", 1.1, status="ok"))  # quiet now
    progress.close(finished_result(hit=False))
    assert progress.broken and not progress.interrupted
    assert slot.boxes[0].labels[-1].startswith("Analysis finished in")
