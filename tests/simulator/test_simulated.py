"""The simulated Ollama server over real HTTP on loopback, driven with httpx.

Time scales are small (0.001–0.02) so the file runs in seconds; timing assertions use
generous ratios because the test machine is small and noisy.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from engine.backends.ollama import OllamaBackend
from engine.run import agents, use_method
from engine.run.runner import RunSettings, run_analysis
from engine.simulator import (
    CACHED_COUNT_FIELD,
    DEFAULT_MODELS,
    FAULT_KINDS,
    PROFILES,
    VERSION,
    SimConfig,
    SimulatedOllamaServer,
    answer_tokens,
    estimate_tokens,
    shared_server,
)
from engine.simulator.registry import running_configs
from engine.sources import snapshot

ServerFactory = Callable[..., SimulatedOllamaServer]
ROOT = Path(__file__).resolve().parents[2]

AGENT = "X-Quorum-Agent"
CPU = snapshot.scenario("cpu-saturation").quantised()
PERF_PROMPT = agents.agent_user_prompt("performance", CPU)
SYSTEM = agents.DEFAULT_ROSTER.specialists[0].system_prompt
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
FINAL_FIELDS = (*DURATIONS, "prompt_eval_count", "eval_count")


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    servers: list[SimulatedOllamaServer] = []

    def make(**overrides: Any) -> SimulatedOllamaServer:
        config = SimConfig(**{"time_scale": 0.005, "num_parallel": 1, **overrides})
        server = SimulatedOllamaServer(config).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def body(
    user: str = PERF_PROMPT, *, stream: bool = True, model: str = "llama3.1:8b"
) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return {"model": model, "messages": messages, "stream": stream}


def stream_chat(
    client: httpx.Client, payload: Mapping[str, Any], agent: str = "PerformanceAnalyst"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(content lines, final line) of a streamed chat."""
    with client.stream("POST", "/api/chat", json=payload, headers={AGENT: agent}) as response:
        assert response.status_code == 200, response.read()
        lines = [json.loads(line) for line in response.iter_lines() if line]
    return lines[:-1], lines[-1]


def call(client: httpx.Client, payload: Mapping[str, Any], agent: str = "A") -> dict[str, Any]:
    response = client.post("/api/chat", json={**payload, "stream": False}, headers={AGENT: agent})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def acall(client: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    response = await client.post("/api/chat", json=body(stream=False), headers={AGENT: agent})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def seconds(final: Mapping[str, Any], key: str) -> float:
    return float(final.get(key, 0)) / 1e9


def work_s(final: Mapping[str, Any]) -> float:
    return seconds(final, "prompt_eval_duration") + seconds(final, "eval_duration")


def queue_s(final: Mapping[str, Any]) -> float:
    """What an Ollama client infers: total − load − prompt_eval − eval."""
    return seconds(final, "total_duration") - seconds(final, "load_duration") - work_s(final)


def content_json(final: Mapping[str, Any]) -> dict[str, Any]:
    parsed = agents.parse_json_answer(final["message"]["content"])
    assert parsed is not None
    return parsed


def assert_schema(schema: Mapping[str, Any], value: Any, where: str = "$") -> None:
    """The subset of JSON Schema that AGENT_SCHEMA and CONSOLIDATION_SCHEMA use."""
    types: dict[str, type | tuple[type, ...]] = {
        "object": dict, "array": list, "string": str, "integer": int,
    }  # fmt: skip
    if "type" in schema:
        assert isinstance(value, types[schema["type"]]) and not isinstance(value, bool), where
    if "enum" in schema:
        assert value in schema["enum"], where
    if "minimum" in schema:
        assert schema["minimum"] <= value <= schema["maximum"], where
    for key in schema.get("required", ()):
        assert key in value, f"{where}.{key} missing"
    for key, sub in schema.get("properties", {}).items():
        if key in value:
            assert_schema(sub, value[key], f"{where}.{key}")
    if schema.get("type") == "array":
        for i, item in enumerate(value):
            assert_schema(schema["items"], item, f"{where}[{i}]")


# --- protocol shapes ----------------------------------------------------------------


def test_root_version_and_tags_say_simulated(make_server: ServerFactory) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url) as client:
        root = client.get("/")
        assert (root.status_code, root.text) == (200, "Ollama is running")
        assert client.head("/").status_code == 200
        version = client.get("/api/version").json()["version"]
        assert version == VERSION and "simulated" in version
        tags = client.get("/api/tags").json()["models"]
        assert [m["name"] for m in tags] == list(DEFAULT_MODELS)
        for model in tags:
            assert model["model"] == model["name"]
            assert model["details"]["family"] == "simulated"
            assert len(model["digest"]) == 64 and model["size"] > 0
        assert (
            next(m for m in tags if m["name"] == "llama3.1:70b")["details"]["parameter_size"]
            == "70.0B"
        )
        assert client.get("/api/nothing").status_code == 404
    assert server.stats.snapshot().requests_by_path["/api/tags"] == 1


def test_ps_lists_a_model_once_used_with_its_expiry(make_server: ServerFactory) -> None:
    server = make_server()  # keep-alive: 300 s × 0.005 = 1.5 s
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/ps").json() == {"models": []}
        call(client, body(model="mistral:7b"))
        (loaded,) = client.get("/api/ps").json()["models"]
    assert loaded["name"] == "mistral:7b" and loaded["details"]["family"] == "simulated"
    assert datetime.fromisoformat(loaded["expires_at"]) > datetime.now(UTC)


def test_stream_is_ndjson_with_ollamas_final_report(make_server: ServerFactory) -> None:
    server = make_server()
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream("POST", "/api/chat", json=body(), headers={AGENT: "P"}) as response,
    ):
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *chunks, final = lines
    assert len(chunks) > 10  # streamed token by token, not in one piece
    for chunk in chunks:
        assert chunk["done"] is False and chunk["model"] == "llama3.1:8b"
        assert chunk["message"]["role"] == "assistant" and chunk["message"]["content"]
        assert chunk["created_at"].endswith("Z")
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    for key in FINAL_FIELDS:
        assert isinstance(final[key], int) and final[key] > 0, key
    assert final["eval_count"] == len(chunks)
    assert final["prompt_eval_count"] == estimate_tokens(SYSTEM + PERF_PROMPT)
    # The phases are disjoint parts of the request, so they fit inside the total (ns).
    assert final["total_duration"] >= sum(final[k] for k in DURATIONS[1:])
    answer = json.loads("".join(c["message"]["content"] for c in chunks))
    assert_schema(agents.AGENT_SCHEMA, answer)


def test_non_stream_returns_one_object_with_the_same_report(make_server: ServerFactory) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/chat", json=body(stream=False))
    assert response.headers["content-type"].startswith("application/json")
    final = response.json()
    assert final["done"] is True and final["done_reason"] == "stop"
    assert all(isinstance(final[key], int) and final[key] > 0 for key in FINAL_FIELDS)
    assert content_json(final) == use_method.agent_answer(CPU, "performance")


def test_zero_valued_fields_are_omitted_like_ollama(make_server: ServerFactory) -> None:
    """An empty conversation only loads the model: nothing was timed, nothing is reported."""
    server = make_server()
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/chat", json={"model": "qwen2.5:3b", "messages": []})
        loaded = client.get("/api/ps").json()["models"]
    assert response.json()["done_reason"] == "load"
    assert not set(FINAL_FIELDS) & set(response.json())
    assert [m["name"] for m in loaded] == ["qwen2.5:3b"]


def test_num_predict_truncates_like_ollama(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        final = call(client, {**body(), "options": {"num_predict": 7}})
    assert (final["eval_count"], final["done_reason"]) == (7, "length")
    assert agents.parse_json_answer(final["message"]["content"]) is None


def test_unknown_model_is_404_only_when_the_list_is_strict(make_server: ServerFactory) -> None:
    strict = make_server(accept_any_model=False, time_scale=0.001)
    lenient = make_server(time_scale=0.001)
    with httpx.Client(base_url=strict.url) as client:
        missing = client.post("/api/chat", json=body(model="phi3:mini"))
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "model 'phi3:mini' not found"},
        )
        assert call(client, body(model="llama3.1:70b"))["done"] is True
    with httpx.Client(base_url=lenient.url) as client:
        assert call(client, body(model="phi3:mini"))["model"] == "phi3:mini"


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"messages": []}', b'{"model": "m", "messages": "hi"}'],
)
def test_bad_bodies_are_400_with_an_error(make_server: ServerFactory, raw: bytes) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/chat", content=raw)
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str) and response.json()["error"]
        assert call(client, body())["done"] is True  # the connection stays usable


# --- answers ------------------------------------------------------------------------


def test_specialist_answer_is_grounded_in_the_snapshot(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        chunks, _ = stream_chat(client, body())
    answer = json.loads("".join(c["message"]["content"] for c in chunks))
    assert_schema(agents.AGENT_SCHEMA, answer)
    cpu = [f for f in answer["findings"] if "cpu_util_pct" in f["metrics"]]
    assert cpu and cpu[0]["severity"] == "CRITICAL"


def test_consolidator_merges_the_specialists(make_server: ServerFactory) -> None:
    outputs = [
        (a.name, use_method.agent_answer(CPU, a.role)) for a in agents.DEFAULT_ROSTER.specialists
    ]
    server = make_server(time_scale=0.001)
    prompt = agents.full_consolidation_user_prompt(CPU, outputs)
    with httpx.Client(base_url=server.url) as client:
        final = call(client, body(prompt), "Consolidator")
    merged = content_json(final)
    assert_schema(agents.CONSOLIDATION_SCHEMA, merged)
    assert merged["insights"] == [i.to_dict() for i in use_method.merge_findings(outputs)]
    cpu = next(i for i in merged["insights"] if i["metrics"] == ["cpu_util_pct"])
    assert cpu["severity"] == "CRITICAL" and len(cpu["agents"]) >= 3
    assert "distinct insight" in merged["summary"]


def test_generalist_and_foreign_prompts(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        general = call(client, body(agents.agent_user_prompt("generalist", CPU)), "Generalist")
        foreign = call(client, body("Why is the sky blue?"), "Stranger")
    assert content_json(general) == use_method.agent_answer(CPU, "generalist")
    assert content_json(foreign)["findings"] == []
    assert foreign["eval_count"] < general["eval_count"]  # a short answer is written faster


# --- timing model -------------------------------------------------------------------


async def test_one_slot_serialises_and_reports_the_queue(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.01, num_parallel=1)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await acall(client, "warm-up")  # keep the model load out of the picture
        finals = await asyncio.gather(*(acall(client, f"Agent{i}") for i in range(4)))
    queues = sorted(queue_s(f) for f in finals)
    work = min(work_s(f) for f in finals)
    assert queues[0] < 0.5 * work  # the first in line got the slot at once
    for before, after in itertools.pairwise(queues):
        assert after > before + 0.5 * work  # each waits for everyone ahead of it
    assert queues[-1] > 2 * work
    stats = server.stats.snapshot()
    assert stats.max_in_flight == 1 and stats.peak_queue >= 2


async def test_n_slots_overlap_without_queueing(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.01, num_parallel=4)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await acall(client, "warm-up")
        started = time.monotonic()
        finals = await asyncio.gather(*(acall(client, f"Agent{i}") for i in range(4)))
        wall = time.monotonic() - started
    work = min(work_s(f) for f in finals)
    assert all(queue_s(f) < 0.5 * work for f in finals)
    assert wall < 2.5 * max(work_s(f) for f in finals)  # serialised would be ≥ 4×
    assert server.stats.snapshot().max_in_flight == 4


def test_first_call_loads_the_model_and_later_calls_are_warm(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.01)
    expected_load = PROFILES["baseline"].load_s * 0.01
    with httpx.Client(base_url=server.url) as client:
        cold, warm = call(client, body()), call(client, body())
    assert seconds(cold, "load_duration") >= 0.8 * expected_load
    assert 0 < seconds(warm, "load_duration") < 0.25 * seconds(cold, "load_duration")
    assert server.stats.snapshot().model_loads == 1


async def test_concurrent_first_calls_share_one_load(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.02, num_parallel=2)
    expected_load = PROFILES["baseline"].load_s * 0.02
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        finals = await asyncio.gather(acall(client, "A"), acall(client, "B"))
    assert server.stats.snapshot().model_loads == 1
    assert all(seconds(f, "load_duration") > 0.3 * expected_load for f in finals)


def test_model_is_reloaded_after_keep_alive(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.005, keep_alive_s=0)
    expected_load = PROFILES["baseline"].load_s * 0.005
    with httpx.Client(base_url=server.url) as client:
        finals = [call(client, body()), call(client, body())]
        assert client.get("/api/ps").json() == {"models": []}
    assert server.stats.snapshot().model_loads == 2
    assert all(seconds(f, "load_duration") >= 0.8 * expected_load for f in finals)


def test_jitter_is_reproducible_for_a_seed(make_server: ServerFactory) -> None:
    def eval_counts(seed: int) -> list[int]:
        server = make_server(time_scale=0.001, seed=seed)
        with httpx.Client(base_url=server.url) as client:
            return [call(client, body(), "PerformanceAnalyst")["eval_count"] for _ in range(4)]

    first, again, other = eval_counts(7), eval_counts(7), eval_counts(8)
    assert first == again and first != other
    profile = PROFILES["baseline"]
    low = profile.agent_output_tokens * (1 - profile.jitter)
    high = profile.agent_output_tokens * (1 + profile.jitter)
    assert all(low - 1 <= n <= high + 1 for n in first + other)
    assert len(set(first + other)) > 1


# --- faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("error", 500, "simulated internal error"),
        ("busy", 503, "server busy"),
        ("notfound", 404, "model 'llama3.1:8b' not found"),
    ],
)
def test_http_error_faults_hit_only_their_agent(
    make_server: ServerFactory, kind: str, status: int, error: str
) -> None:
    server = make_server(time_scale=0.001, faults=(("SecurityAnalyst", kind),))
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/chat", json=body(), headers={AGENT: "SecurityAnalyst"})
        assert (response.status_code, response.json()) == (status, {"error": error})
        assert call(client, body(), "CostOptimizer")["done"] is True


def test_malformed_fault_streams_prose(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001, faults=(("CostOptimizer", "malformed"),))
    with httpx.Client(base_url=server.url) as client:
        chunks, final = stream_chat(client, body(), "CostOptimizer")
    text = "".join(c["message"]["content"] for c in chunks)
    assert text.startswith("Sure!") and agents.parse_json_answer(text) is None
    assert final["done"] is True and final["eval_count"] > 0


def test_error_midstream_fault_ends_with_an_error_line(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001, faults=(("ReliabilityEngineer", "error-midstream"),))
    headers = {AGENT: "ReliabilityEngineer"}
    with httpx.Client(base_url=server.url) as client:
        with client.stream("POST", "/api/chat", json=body(), headers=headers) as response:
            assert response.status_code == 200
            lines = [json.loads(line) for line in response.iter_lines() if line]
        not_streamed = client.post("/api/chat", json=body(stream=False), headers=headers)
    *chunks, last = lines
    assert chunks and all(c["done"] is False for c in chunks)
    assert set(last) == {"error"} and "simulated" in last["error"]
    assert not_streamed.status_code == 500 and "error" in not_streamed.json()


def test_slow_fault_triples_prefill_and_decode(make_server: ServerFactory) -> None:
    # Without prefix reuse: the second call would otherwise find its prompt cached.
    server = make_server(time_scale=0.01, faults=(("Slowpoke", "slow"),), prefix_cache=False)
    with httpx.Client(base_url=server.url) as client:
        normal, slow = call(client, body(), "Brisk"), call(client, body(), "Slowpoke")

    def per_token(final: Mapping[str, Any]) -> float:
        return float(final["eval_duration"]) / float(final["eval_count"])

    assert slow["prompt_eval_duration"] > 2 * normal["prompt_eval_duration"]
    assert per_token(slow) > 2 * per_token(normal)


def test_faults_change_at_runtime(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        server.set_fault("A", "error")
        assert client.post("/api/chat", json=body(), headers={AGENT: "A"}).status_code == 500
        server.set_fault("A", None)
        assert call(client, body(), "A")["done"] is True
    with pytest.raises(ValueError, match="kind"):
        server.set_fault("A", "explode")


def test_hang_holds_its_slot_until_the_client_leaves(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001, num_parallel=1, faults=(("Stuck", "hang"),))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        with client.stream("POST", "/api/chat", json=body(), headers={AGENT: "Stuck"}) as hung:
            first = json.loads(next(hung.iter_lines()))
            assert first["done"] is False and first["message"]["content"]
            assert server.stats.snapshot().in_flight == 1
        # Leaving the block closed the connection mid-body: the slot must come back.
        after = call(client, body(), "Next")
    assert after["done"] is True and content_json(after)["findings"]


def test_a_client_leaving_mid_stream_ends_the_request_quietly(
    make_server: ServerFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    server = make_server(time_scale=0.05, num_parallel=1)  # decoding takes ≈ 0.5 s
    with httpx.Client(base_url=server.url, timeout=10) as client:
        with client.stream("POST", "/api/chat", json=body(), headers={AGENT: "A"}) as gone:
            assert json.loads(next(gone.iter_lines()))["done"] is False
        after = call(client, body(), "B")  # needs the slot the first request held
    assert after["done"] is True
    # Freed when the write failed, not after the ≈ 0.5 s of decoding that was left.
    assert queue_s(after) < 0.5 * work_s(after)
    assert capfd.readouterr().err == ""


def test_stop_releases_hung_requests_promptly() -> None:
    config = SimConfig(time_scale=0.001, num_parallel=1, faults=(("Stuck", "hang"),))
    server = SimulatedOllamaServer(config).start()
    streaming = threading.Event()
    outcome: list[BaseException | str] = []

    def hang() -> None:
        try:
            with (
                httpx.Client(base_url=server.url, timeout=10) as client,
                client.stream("POST", "/api/chat", json=body(), headers={AGENT: "Stuck"}) as r,
            ):
                lines = r.iter_lines()
                next(lines)
                streaming.set()
                outcome.append("finished: " + "".join(lines))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=hang)
    worker.start()
    assert streaming.wait(10)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    worker.join(10)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError)  # cut off, no answer
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"profile": "tpu"}, "profile"),
        ({"num_parallel": 0}, "num_parallel"),
        ({"time_scale": 0}, "time_scale"),
        ({"time_scale": -1.0}, "time_scale"),
        ({"faults": (("A", "explode"),)}, "faults"),
        ({"keep_alive_s": -1}, "keep_alive_s"),
    ],
)
def test_config_is_validated_with_the_field_name(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        SimConfig(**overrides)


def test_fingerprint_names_what_changes_answers_or_timings() -> None:
    base = SimConfig(faults=(("A", "slow"), ("B", "hang")))
    assert base.fingerprint() == SimConfig(faults=(("B", "hang"), ("A", "slow"))).fingerprint()
    assert base.fingerprint().startswith("simulated:baseline:")
    variants = [
        SimConfig(profile="gpu", faults=base.faults),
        SimConfig(seed=8, faults=base.faults),
        SimConfig(time_scale=0.5, faults=base.faults),
        SimConfig(num_parallel=1, faults=base.faults),
        SimConfig(),
    ]
    assert len({base.fingerprint(), *(v.fingerprint() for v in variants)}) == 6
    assert set(FAULT_KINDS) == {
        "hang", "error", "error-midstream", "malformed", "slow", "busy", "notfound",
    }  # fmt: skip


def test_profiles_match_their_documented_per_call_seconds() -> None:
    outputs = [
        (a.name, use_method.agent_answer(CPU, a.role)) for a in agents.DEFAULT_ROSTER.specialists
    ]
    specialist_tokens = [
        estimate_tokens(a.system_prompt + agents.agent_user_prompt(a.role, CPU))
        for a in agents.DEFAULT_ROSTER.specialists
    ]
    consolidator = agents.DEFAULT_ROSTER.consolidator.system_prompt
    consolidator_tokens = estimate_tokens(
        consolidator + agents.full_consolidation_user_prompt(CPU, outputs)
    )

    def six_calls(name: str) -> float:
        profile = PROFILES[name]
        return sum(profile.call_s("specialist", t) for t in specialist_tokens) + profile.call_s(
            "consolidator", consolidator_tokens
        )

    assert 63 < six_calls("baseline") < 77  # the team's measurement: ≈ 70 s, ≈ 11.7 s a call
    assert 1.5 < six_calls("gpu") / 6 < 2.5
    assert 5 < six_calls("cpu-small") / 6 < 7
    fast, base = PROFILES["fast-consolidator"], PROFILES["baseline"]
    assert base.consolidator_output_tokens == 5 * fast.consolidator_output_tokens
    assert fast.call_s("specialist", 250) == base.call_s("specialist", 250)
    assert all(p.load_s > 0 and p.description for p in PROFILES.values())


def test_shared_server_is_one_running_server_per_config() -> None:
    config = SimConfig(time_scale=0.001, seed=12345)
    server = shared_server(config)
    assert shared_server(SimConfig(time_scale=0.001, seed=12345)) is server
    assert shared_server(SimConfig(time_scale=0.001, seed=54321)) is not server
    assert httpx.get(f"{server.url}/api/version", timeout=5).json()["version"] == VERSION


def test_shared_servers_are_bounded_least_recently_used_first() -> None:
    first = shared_server(SimConfig(time_scale=0.001, seed=1000))
    kept = shared_server(SimConfig(time_scale=0.001, seed=1001))
    for seed in range(1002, 1010):
        shared_server(SimConfig(time_scale=0.001, seed=seed))
        shared_server(SimConfig(time_scale=0.001, seed=1001))  # keep using this one
    assert not first.running
    assert kept.running and shared_server(SimConfig(time_scale=0.001, seed=1001)) is kept


def test_an_embedded_backend_starts_its_server_only_when_the_backend_is_built() -> None:
    from engine.service import EMBEDDED_SIMULATOR, BackendConfig

    config = SimConfig(time_scale=0.001, seed=24680)
    embedded = BackendConfig(kind="simulated", sim=config)
    assert embedded.url() == EMBEDDED_SIMULATOR and embedded.embedded
    assert embedded.fingerprint().startswith("simulated|simulated:baseline:")
    assert config not in running_configs()  # asking where it is started nothing

    async def build() -> str:
        backend = embedded.factory()
        try:
            return str(backend.base_url)
        finally:
            await backend.aclose()

    url = asyncio.run(build())
    assert config in running_configs() and url == shared_server(config).url
    assert embedded.started().base_url == url and not embedded.started().embedded


# --- /api/generate (the plan's own client uses it) -----------------------------------


def generate_body(
    prompt: str = PERF_PROMPT, *, system: str | None = SYSTEM, stream: bool = True
) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": "llama3.1:8b", "prompt": prompt, "stream": stream}
    if system is not None:
        payload["system"] = system
    return payload


def test_generate_non_stream_answers_like_chat(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001, prefix_cache=False)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/generate", json=generate_body(stream=False))
        chat = call(client, body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    final = response.json()
    assert "message" not in final and final["done"] is True and final["done_reason"] == "stop"
    assert json.loads(final["response"]) == use_method.agent_answer(CPU, "performance")
    assert json.loads(final["response"]) == content_json(chat)
    # The system prompt is read, as a chat's system message is: the same prefill work.
    assert final["prompt_eval_count"] == chat["prompt_eval_count"]
    assert all(isinstance(final[key], int) and final[key] > 0 for key in FINAL_FIELDS)


def test_generate_streams_response_pieces_with_the_final_report(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream("POST", "/api/generate", json=generate_body(), headers={AGENT: "P"}) as r,
    ):
        assert r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    *chunks, final = lines
    assert len(chunks) > 10 and all(c["done"] is False and c["response"] for c in chunks)
    assert final["done"] is True and final["response"] == "" and "message" not in final
    assert final["eval_count"] == len(chunks)
    assert final["total_duration"] >= sum(final[k] for k in DURATIONS[1:])
    assert_schema(agents.AGENT_SCHEMA, json.loads("".join(c["response"] for c in chunks)))


def test_generate_without_system_prefills_only_the_prompt(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        final = client.post("/api/generate", json=generate_body(system=None, stream=False)).json()
    assert final["prompt_eval_count"] == estimate_tokens(PERF_PROMPT)
    assert json.loads(final["response"]) == use_method.agent_answer(CPU, "performance")


def test_generate_has_the_same_load_faults_and_counters(make_server: ServerFactory) -> None:
    server = make_server(
        time_scale=0.01, faults=(("Slowpoke", "slow"), ("Broken", "error")), prefix_cache=False
    )
    with httpx.Client(base_url=server.url) as client:
        loaded = client.post("/api/generate", json={"model": "llama3.1:8b"}).json()
        assert (loaded["done_reason"], loaded["response"]) == ("load", "")
        broken = client.post("/api/generate", json=generate_body(), headers={AGENT: "Broken"})
        assert (broken.status_code, broken.json()) == (500, {"error": "simulated internal error"})
        brisk = client.post(
            "/api/generate", json=generate_body(stream=False), headers={AGENT: "Brisk"}
        ).json()
        slow = client.post(
            "/api/generate", json=generate_body(stream=False), headers={AGENT: "Slowpoke"}
        ).json()
    assert seconds(brisk, "load_duration") < 0.25 * PROFILES["baseline"].load_s * 0.01  # warm
    assert slow["prompt_eval_duration"] > 2 * brisk["prompt_eval_duration"]
    stats = server.stats.snapshot()
    assert stats.model_loads == 1 and stats.requests_by_path["/api/generate"] == 4
    assert stats.chat_by_agent["Slowpoke"] == 1


@pytest.mark.parametrize(
    "raw", [b'{"prompt": "hi"}', b'{"model": "m", "prompt": 3}', b'{"model": "m", "system": []}']
)
def test_generate_bad_bodies_are_400(make_server: ServerFactory, raw: bytes) -> None:
    server = make_server(time_scale=0.001)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/generate", content=raw)
        assert response.status_code == 400 and response.json()["error"]
        assert client.post("/api/generate", json=generate_body(stream=False)).status_code == 200


# --- prefix caching, as Ollama's and llama.cpp's slots do -----------------------------

SHARED_800 = "".join(
    f"line {i:04d} of a shared prompt prefix, padded to size.\n" for i in range(64)
)
SHARED_800 = SHARED_800[:3200]  # 800 tokens by the simulator's 4-characters-a-token count


def plain(system: str, user: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"model": "llama3.1:8b", "messages": messages, "stream": False, **extra}


def test_a_shared_prefix_is_prefilled_once(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.005, num_parallel=1)
    with httpx.Client(base_url=server.url) as client:
        first = call(client, plain("", SHARED_800 + "first question, forty characters long.."))
        second = call(client, plain("", SHARED_800 + "second question, as long as the first."))
    assert (first["prompt_eval_count"], first[CACHED_COUNT_FIELD]) == (810, 0)
    # Only the tail is evaluated: 800 tokens come from the slot's KV cache.
    assert (second["prompt_eval_count"], second[CACHED_COUNT_FIELD]) == (10, 800)
    assert second["prompt_eval_duration"] < 0.1 * first["prompt_eval_duration"]
    stats = server.stats.snapshot()
    assert (stats.prompt_tokens_evaluated, stats.prompt_tokens_cached) == (820, 800)


def test_an_identical_prompt_still_evaluates_one_token(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001, num_parallel=1)
    with httpx.Client(base_url=server.url) as client:
        finals = [call(client, plain(SYSTEM, PERF_PROMPT)) for _ in range(2)]
    total = estimate_tokens(SYSTEM + PERF_PROMPT)
    assert finals[1]["prompt_eval_count"] == 1 and finals[1][CACHED_COUNT_FIELD] == total - 1


def test_a_request_goes_to_the_free_slot_with_the_longest_common_prefix(
    make_server: ServerFactory,
) -> None:
    server = make_server(time_scale=0.001, num_parallel=3)
    other = "An unrelated conversation that shares nothing with the other one. " * 20
    with httpx.Client(base_url=server.url) as client:
        call(client, plain("", SHARED_800 + "a"))  # slot 0 holds the shared prefix
        call(client, plain("", other))  # least recently used among equals: slot 1
        call(client, plain("", other + "b"))  # follows its own prefix to slot 1
        back = call(client, plain("", SHARED_800 + "c" * 40))  # slot 0, not the empty slot 2
    assert back[CACHED_COUNT_FIELD] == 800


def test_without_prefix_cache_every_prompt_is_prefilled_whole(make_server: ServerFactory) -> None:
    server = make_server(time_scale=0.001, num_parallel=1, prefix_cache=False)
    with httpx.Client(base_url=server.url) as client:
        finals = [call(client, plain(SYSTEM, PERF_PROMPT)) for _ in range(2)]
    assert {f["prompt_eval_count"] for f in finals} == {estimate_tokens(SYSTEM + PERF_PROMPT)}
    assert all(CACHED_COUNT_FIELD not in f for f in finals)


def test_agents_prompts_share_the_snapshot_prefix_on_the_server(make_server: ServerFactory) -> None:
    """The product's own prompts: after one agent, the next prefills only its role part."""
    roster = agents.DEFAULT_ROSTER
    server = make_server(time_scale=0.001, num_parallel=2)
    with httpx.Client(base_url=server.url) as client:
        finals = [
            call(client, plain(a.system_prompt, agents.agent_user_prompt(a.role, CPU)), a.name)
            for a in roster.specialists
        ]
    assert finals[0][CACHED_COUNT_FIELD] == 0
    for final in finals[1:]:
        assert final[CACHED_COUNT_FIELD] > 4 * final["prompt_eval_count"]


def test_decode_follows_the_tokens_of_the_answer_written(make_server: ServerFactory) -> None:
    outputs = [
        (a.name, a.role, use_method.agent_answer(CPU, a.role))
        for a in agents.DEFAULT_ROSTER.specialists
    ]
    verdict_prompt = agents.consolidation_user_prompt(CPU, use_method.compact_findings(outputs))
    server = make_server(time_scale=0.01, num_parallel=1)
    profile = PROFILES["baseline"]
    with httpx.Client(base_url=server.url) as client:
        specialist = call(client, body(), "PerformanceAnalyst")
        verdict = call(client, body(verdict_prompt), "Consolidator")
    text = verdict["message"]["content"]
    assert json.loads(text)["insights"]  # the compact verdict, not the full insight list
    # The verdict is written at its own length; a long rule-based answer at the
    # profile's calibrated length (≈ 120 tokens, ± jitter).
    assert (
        abs(verdict["eval_count"] - estimate_tokens(text))
        <= profile.jitter * estimate_tokens(text) + 1
    )
    assert verdict["eval_count"] < 0.4 * profile.consolidator_output_tokens
    assert (
        abs(specialist["eval_count"] - profile.agent_output_tokens)
        <= 0.16 * profile.agent_output_tokens
    )
    # Both at the profile's unchanged decode rate.
    for final in (specialist, verdict):
        rate = final["eval_count"] / (seconds(final, "eval_duration") / 0.01)
        assert 0.5 * profile.decode_tps < rate <= 1.1 * profile.decode_tps


def test_answer_tokens_is_the_shorter_of_text_and_profile() -> None:
    base = PROFILES["baseline"]
    assert answer_tokens(base, "consolidator", "x" * 100, 0.0) == 25
    assert answer_tokens(base, "specialist", "x" * 4000, 0.0) == base.agent_output_tokens
    assert answer_tokens(base, "foreign", "x" * 4000, 0.0) == 1000
    assert answer_tokens(base, "specialist", "x" * 4000, 1.0) == round(120 * (1 + base.jitter))


# --- clients that go away --------------------------------------------------------------


def test_an_abandoned_non_streamed_request_frees_its_slot(make_server: ServerFactory) -> None:
    """Ollama cancels a request whose client disconnects; so does the simulator, also
    while it decodes a non-streamed answer (nothing is written until the end)."""
    server = make_server(time_scale=0.05, num_parallel=1)  # ≈ 0.5 s of decoding a call
    host, port = server.url.removeprefix("http://").split(":")
    payload = json.dumps(body(stream=False)).encode()
    request = (
        f"POST /api/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"{AGENT}: Leaver\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with httpx.Client(base_url=server.url, timeout=10) as client:
        # Loads the model and fills the slot's cache: the leaver's prefill is one token,
        # so it leaves while the answer is being decoded.
        call(client, body(), "warm-up")
        with socket.create_connection((host, int(port)), timeout=10) as leaver:
            leaver.sendall(request)
            assert server.stats.wait_for_in_flight(1, timeout_s=10)
        after = call(client, body(), "Next")  # needs the slot the leaver held
    assert queue_s(after) < 0.3 * work_s(after)
    assert server.stats.snapshot().chat_by_agent["Leaver"] == 1


# --- serve-simulated --fault -----------------------------------------------------------


def test_serve_simulated_injects_faults_for_any_client() -> None:
    command = [
        sys.executable, "-m", "engine", "serve-simulated", "--port", "0", "--time-scale", "0.001",
        "--fault", "Broken=error", "--fault", "Busy=busy",
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()  # printed once the port is bound
            assert "faults: Broken=error, Busy=busy" in banner, banner
            url = re.search(r"http://127\.0\.0\.1:\d+", banner)
            assert url is not None
            with httpx.Client(base_url=url.group(0), timeout=10) as client:
                statuses = {
                    agent: client.post("/api/chat", json=body(stream=False), headers={AGENT: agent})
                    for agent in ("Broken", "Busy", "Fine")
                }
            assert statuses["Broken"].status_code == 500
            assert statuses["Busy"].status_code == 503
            assert statuses["Fine"].status_code == 200 and statuses["Fine"].json()["done"]
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_serve_simulated_rejects_an_unknown_fault() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "serve-simulated", "--fault", "A=explode"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: --fault: expected AGENT=KIND")


# --- the product against it ----------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu-saturation", "error-spike", "healthy"])
async def test_compact_and_full_consolidations_agree_on_the_simulated_backend(
    make_server: ServerFactory, name: str
) -> None:
    """Same findings, severities, agents and grounding (metrics), in the same order,
    whether the Consolidator rewrites every insight or only ranks and groups ids."""
    server = make_server(time_scale=0.001, num_parallel=6)
    results = {}
    styles: tuple[Literal["full", "compact"], ...] = ("full", "compact")
    for style in styles:
        results[style] = await run_analysis(
            snapshot.scenario(name),
            agents.DEFAULT_ROSTER,
            lambda: OllamaBackend(server.url, simulated=True),
            RunSettings(quorum=5, consolidation=style),
            model="llama3.1:8b",
        )
    full, compact = results["full"], results["compact"]
    assert full.consolidation is not None and full.consolidation.method == "llm"
    assert compact.consolidation is not None and compact.consolidation.method == "llm"

    # Both merges are independent of the order in which the agents answered.
    assert [i.to_dict() for i in compact.insights] == [i.to_dict() for i in full.insights]
    assert compact.consolidation.output_tokens is not None and full.consolidation.output_tokens
    assert compact.consolidation.output_tokens < 0.5 * full.consolidation.output_tokens
