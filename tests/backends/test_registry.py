"""The backend registry: every registered kind builds a backend that answers over real HTTP,
probes its server's slots, has a label and widgets in the dashboard; an unknown kind is one
line wherever a kind is read."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator

import pytest

from engine.backends.base import ChatRequest
from engine.backends.endpoints import parse_endpoint
from engine.backends.registry import (
    BACKENDS,
    DEFAULT_KIND,
    OLLAMA,
    OPENAI,
    SIMULATED,
    BackendSpec,
    ClientOptions,
    kinds,
    register,
    spec,
)
from engine.service import BackendConfig
from engine.simulator import SimConfig, SimulatedOllamaServer
from tests.support.loopback import LoopbackServer, Route


def _sse(*events: object) -> list[bytes]:
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


@contextlib.contextmanager
def _simulated() -> Iterator[str]:
    with SimulatedOllamaServer(SimConfig(time_scale=0.001)) as server:
        yield server.url


@contextlib.contextmanager
def _llama_cpp() -> Iterator[str]:
    """An OpenAI-compatible server that reports its slots as llama.cpp's does."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "ready"}, "finish_reason": "stop"}]}
    routes = {
        "/v1/chat/completions": Route(
            chunks=_sse(chunk), headers={"Content-Type": "text/event-stream"}
        ),
        "/v1/models": Route(chunks=[json.dumps({"data": [{"id": "m"}]}).encode()]),
        "/props": Route(chunks=[json.dumps({"total_slots": 3}).encode()]),
    }
    with LoopbackServer(routes) as server:
        yield server.url + "/v1"


# A server speaking each kind's protocol: a kind registered without one fails here.
SERVERS: dict[str, Callable[[], contextlib.AbstractContextManager[str]]] = {
    SIMULATED: _simulated,
    OLLAMA: _simulated,  # the simulated server speaks Ollama's native API
    OPENAI: _llama_cpp,
}


@pytest.mark.parametrize("kind", kinds())
async def test_every_kind_builds_answers_and_probes(kind: str) -> None:
    known = spec(kind)
    with SERVERS[kind]() as url:
        backend = known.build(url, ClientOptions(timeout_s=10.0, max_connections=2))
        try:
            await backend.open()
            request = ChatRequest(
                model="llama3.1:8b", system="", user="ping", agent="probe", max_tokens=4
            )
            result = await backend.chat(request)
            status = await backend.status()
        finally:
            await backend.aclose()
        slots = await known.probe_slots(url)
    assert (backend.kind, backend.simulated) == (kind, known.simulator)
    assert result.content and status.reachable, status.error
    # Ollama-protocol servers do not report slots (learned later); llama.cpp's /props does.
    assert (slots.slots, slots.learn) == ((3, False) if kind == OPENAI else (1, True))


def test_every_kind_has_a_label_and_dashboard_widgets() -> None:
    from ui.context import BACKEND_CHOICES
    from ui.sidebar import KIND_SECTIONS

    assert set(KIND_SECTIONS) == set(kinds())
    for kind in kinds():
        assert spec(kind).label and BACKEND_CHOICES[kind] == spec(kind).label
    assert list(BACKEND_CHOICES) == ["auto", *kinds(), "endpoints"]
    assert kinds()[0] == DEFAULT_KIND


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda: spec("vllm"), "backend: must be one of simulated, ollama, openai, got 'vllm'"),
        (lambda: spec(["ollama"]), "backend: must be one of simulated, ollama, openai, got ['ollama']"),
        (lambda: BackendConfig(kind="vllm"), "backend: must be one of simulated, ollama, openai, got 'vllm'"),
        (lambda: parse_endpoint(2, {"kind": 7}), "endpoints[2].kind: must be one of simulated, ollama, openai, got 7"),
        (lambda: BackendConfig(kind=OPENAI), "base-url: required for the openai backend (e.g. http://host:8000/v1)"),
    ],
)  # fmt: skip
def test_an_unknown_kind_is_one_line(read: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        read()
    assert str(caught.value) == message


def test_a_kind_registers_once() -> None:
    with pytest.raises(ValueError, match=r"^backend 'ollama': registered twice$"):
        register(BackendSpec(OLLAMA, "again", BACKENDS[OLLAMA].build, BACKENDS[OLLAMA].probe_slots))
    assert BACKENDS[OLLAMA].label == "Ollama"


def test_default_urls_come_from_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu1:12345")
    assert BackendConfig(kind=OLLAMA).url() == "http://gpu1:12345"
    assert BackendConfig(kind=OPENAI, base_url="http://h:8000/v1").url() == "http://h:8000/v1"
    assert BackendConfig(kind=SIMULATED).embedded
    assert not BackendConfig(kind=SIMULATED, base_url="http://127.0.0.1:1").embedded
