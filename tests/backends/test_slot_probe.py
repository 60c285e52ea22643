"""`--server-slots auto`: ask the server over real HTTP on loopback."""

from __future__ import annotations

import json

import pytest

from engine.backends.registry import spec
from engine.backends.slot_probe import OLLAMA_LEARNS, server_root, slots_from_props
from tests.support.loopback import LoopbackServer, Route


def _json(obj: object, status: int = 200) -> Route:
    return Route(status=status, chunks=[json.dumps(obj).encode()])


async def test_llama_cpp_reports_its_slots_in_props() -> None:
    props = {"total_slots": 5, "default_generation_settings": {"n_ctx": 4096}}
    with LoopbackServer({"/props": _json(props)}) as server:
        slots = await spec("openai").probe_slots(server.url + "/v1", api_key="sk-secret")
        assert server.requests[0].headers["authorization"] == "Bearer sk-secret"
    assert slots.slots == 5 and "llama.cpp /props" in slots.source


async def test_ollama_behind_its_openai_api_is_to_be_learned() -> None:
    routes = {
        "/props": _json({"error": "not found"}, 404),
        "/api/version": _json({"version": "0.9"}),
    }
    with LoopbackServer(routes) as server:
        slots = await spec("openai").probe_slots(server.url + "/v1")
    assert (slots.slots, slots.source, slots.learn) == (1, OLLAMA_LEARNS, True)
    assert slots.server == "ollama 0.9"


async def test_native_ollama_that_is_down_is_still_to_be_learned() -> None:
    slots = await spec("ollama").probe_slots("http://127.0.0.1:9")  # nothing listens there
    assert (slots.slots, slots.learn) == (1, True)  # safe until learned
    assert "OLLAMA_NUM_PARALLEL" in slots.source and "--server-slots" in slots.source


async def test_llama_cpp_props_are_asked_first_even_for_the_ollama_protocol() -> None:
    with LoopbackServer({"/props": _json({"total_slots": 3})}) as server:
        slots = await spec("ollama").probe_slots(server.url)
    assert (slots.slots, slots.learn) == (3, False) and "llama.cpp /props" in slots.source


async def test_a_server_that_does_not_say_gets_no_client_limit() -> None:
    with LoopbackServer({}) as server:  # every path 404s, as on vLLM or a hosted API
        slots = await spec("openai").probe_slots(server.url + "/v1")
    assert slots.slots is None and "does not report" in slots.source


async def test_an_unreachable_server_is_unknown_not_an_error() -> None:
    slots = await spec("openai").probe_slots("http://127.0.0.1:9/v1")
    assert slots.slots is None and "did not answer" in slots.source


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("http://h:8080/v1", "http://h:8080"),
        ("http://h:8080/v1/", "http://h:8080"),
        ("https://u:p@h/api/v1", "https://u:p@h/api"),
        ("http://h:8080", "http://h:8080"),
    ],
)
def test_server_root(url: str, root: str) -> None:
    assert server_root(url) == root


@pytest.mark.parametrize("body", [{"total_slots": 0}, {"total_slots": True}, {}, [], "x"])
def test_insane_props_are_ignored(body: object) -> None:
    assert slots_from_props(body) is None
