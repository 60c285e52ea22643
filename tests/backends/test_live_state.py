"""A server's live state for the Settings page (engine/backends/live_state.py), over real loopback
HTTP: llama.cpp's /slots (the simulator's llama.cpp mode), vLLM's /metrics, Ollama's
silence."""

from __future__ import annotations

import threading

import httpx

from engine.backends.live_state import from_metrics, from_slots, live_state, metric_values
from engine.service import BackendConfig, Engine
from engine.simulator import SimConfig, SimulatedOllamaServer
from tests.support.loopback import LoopbackServer, Route

VLLM_METRICS = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
vllm:num_requests_waiting{model_name="m"} 1.0
vllm:prefix_cache_queries_total{model_name="m"} 200.0
vllm:prefix_cache_hits_total{model_name="m"} 150.0
"""


def test_parsers_take_any_text() -> None:
    assert from_slots([{"id": 0, "is_processing": True}, {"id": 1}]) == (
        "1 of 2 slots busy (llama.cpp /slots)"
    )
    assert from_slots({"error": "x"}) is None and from_slots([]) is None
    assert metric_values('a 1\na{x="y"} 2\nbad\nb nan\n# c 3') == {"a": 3.0}
    assert from_metrics("llamacpp:requests_processing 2\nllamacpp:requests_deferred 0") == (
        "running 2, waiting 0 (/metrics)"
    )
    assert from_metrics("nothing 1") is None


async def test_vllm_metrics_give_running_waiting_and_prefix_hits() -> None:
    with LoopbackServer({"/metrics": Route(status=200, chunks=[VLLM_METRICS])}) as server:
        line = await live_state(server.url + "/v1")
    assert line == "running 3, waiting 1, prefix-cache hits 75% (/metrics)"


async def test_ollama_reports_nothing_live() -> None:
    with SimulatedOllamaServer(SimConfig(time_scale=0.001)) as server:
        assert await live_state(server.url) is None
    assert await live_state("http://127.0.0.1:9") is None  # down: nothing, no error


def test_the_engine_shows_llama_cpp_slots_busy_while_a_request_works() -> None:
    config = SimConfig(num_parallel=3, llama_props=True, time_scale=0.5)
    with SimulatedOllamaServer(config) as server:
        engine = Engine(BackendConfig(kind="ollama", base_url=server.url))
        assert engine.endpoint_live() == ["0 of 3 slots busy (llama.cpp /slots)"]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        worker = threading.Thread(
            target=lambda: httpx.post(f"{server.url}/api/chat", json=body, timeout=30)
        )
        worker.start()
        assert server.stats.wait_for_in_flight(1, timeout_s=10)
        assert engine.endpoint_live() == ["1 of 3 slots busy (llama.cpp /slots)"]
        worker.join(30)
