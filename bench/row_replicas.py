"""R1: dashboard sessions on two app processes sharing Redis; one snapshot, one fan-out.

Set-up, all real parts on loopback: a `redis-server`, one simulated LLM server (the
dashboard's Ollama backend points at it, so both processes share one server whose chat
requests are counted), and two `streamlit run app.py` processes with their own data
directories and `QUORUM_CACHE_URL` on the same Redis: two replicas.

Clients are real Streamlit websocket sessions (the browser's protocol: a `rerun_script`
BackMsg, ForwardMsgs until `script_finished`), half on each process. All sessions open,
wait on one gate, then load the Live page at once (the first load: exactly one analysis
must reach the LLM server for all of them, across both processes) and refresh it
`refreshes` times (full reruns, served from the shared cache). A session's refresh time
is from sending the rerun to `script_finished`, measured by the client; the clients run
in this process, on the same two cores as the servers, so the figures include their own
protobuf work. An error is a session that fails, times out, ends with an exception
element, or shows no result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.levels import Level
from bench.measure import Row, Target, check, percentile
from bench.plumbing import free_port, stop_process
from bench.redis_server import NOT_INSTALLED, LineReader, redis_in_scratch
from bench.sim import running, sim_config

REPO = Path(__file__).resolve().parent.parent
PROCESSES = 2
CHAT_PER_ANALYSIS = 6
SCALE = 0.05  # the one analysis takes ≈ 1.4 s on the baseline profile
SESSION_TIMEOUT_S = 120.0
# (sessions per process, refreshes per session) by level
SIZES = {"full": (25, 10), "quick": (25, 3), "smoke": (2, 1)}
RESULT_LABELS = (b"cached \xc2\xb7", b"fresh run")


@dataclass
class SessionLog:
    first_s: float | None = None
    refresh_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def app_process(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port; its base URL once it serves."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env={**env, "QUORUM_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        LineReader(proc.stdout).wait_for("URL:", 60)  # Streamlit says where it listens
        url = f"http://127.0.0.1:{port}"
        httpx.get(f"{url}/_stcore/health", timeout=10).raise_for_status()
        yield url
    finally:
        stop_process(proc, grace_s=15)


async def _rerun(ws: object, log: SessionLog) -> float:
    """One full rerun of the page; its time. Records what went wrong in `log`."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    assert isinstance(ws, websockets.ClientConnection)
    msg = BackMsg()
    msg.rerun_script.query_string = ""
    msg.rerun_script.page_script_hash = ""
    started = time.perf_counter()
    await ws.send(msg.SerializeToString())
    labelled = False
    while True:
        forward = ForwardMsg()
        forward.ParseFromString(await ws.recv())
        kind = forward.WhichOneof("type")
        if kind == "delta":
            if forward.delta.new_element.WhichOneof("type") == "exception":
                log.errors.append("exception: " + forward.delta.new_element.exception.message)
            raw = forward.SerializeToString()
            labelled = labelled or any(label in raw for label in RESULT_LABELS)
        elif kind == "script_finished":
            took = time.perf_counter() - started
            if forward.script_finished != ForwardMsg.FINISHED_SUCCESSFULLY:
                log.errors.append(f"script_finished={forward.script_finished}")
            if not labelled:
                log.errors.append("no result on the page")
            return took


async def _session(
    url: str, gate: asyncio.Event, ready: asyncio.Barrier, refreshes: int
) -> SessionLog:
    import websockets

    log = SessionLog()
    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    try:
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None) as ws:  # type: ignore[list-item]
            await ready.wait()
            await gate.wait()
            log.first_s = await asyncio.wait_for(_rerun(ws, log), SESSION_TIMEOUT_S)
            for _ in range(refreshes):
                log.refresh_s.append(await asyncio.wait_for(_rerun(ws, log), SESSION_TIMEOUT_S))
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        log.errors.append(f"{type(exc).__name__}: {exc}")
    return log


async def _drive(urls: list[str], per_process: int, refreshes: int) -> list[SessionLog]:
    gate = asyncio.Event()
    total = per_process * len(urls)
    ready = asyncio.Barrier(total + 1)
    tasks = [
        asyncio.create_task(_session(url, gate, ready, refreshes))
        for url in urls
        for _ in range(per_process)
    ]
    # Every session connected; one that failed to connect reports it itself.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), SESSION_TIMEOUT_S)
    gate.set()
    return list(await asyncio.gather(*tasks))


def _environment(server_url: str, redis_url: str, roster: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    env.update(
        {
            "QUORUM_BACKEND": "ollama",
            "OLLAMA_HOST": server_url.removeprefix("http://"),
            "QUORUM_CACHE_URL": redis_url,
            "QUORUM_CONFIG": str(roster),
        }
    )
    return env


def run(level: Level) -> Row:
    per_process, refreshes = SIZES.get(level.name, SIZES["quick"])
    sessions = per_process * PROCESSES
    row = Row(
        "R1",
        f"{sessions} dashboard sessions on {PROCESSES} app processes sharing Redis, one snapshot",
        f"exactly 1 fan-out ({CHAT_PER_ANALYSIS} chat requests) for all sessions; 0 errors",
        {
            "sessions": sessions,
            "processes": PROCESSES,
            "refreshes_per_session": refreshes,
            "profile": "baseline",
            "time_scale": SCALE,
            "clients": "Streamlit websocket sessions (rerun_script → script_finished)",
            "state": "redis-server on loopback, QUORUM_CACHE_URL in both processes",
        },
    )
    with ExitStack() as stack:
        scratch_redis = redis_in_scratch(stack, "quorum-r1-")
        if scratch_redis is None:
            row.not_measured = NOT_INSTALLED
            return row
        tmp, redis = scratch_redis
        server = stack.enter_context(running(sim_config(scale=SCALE)))
        env = _environment(server.url, redis.url, tmp / "no-quorum.toml")
        urls = [stack.enter_context(app_process(tmp / f"app{i}", env)) for i in range(PROCESSES)]
        server.stats.reset()
        started = time.perf_counter()
        logs = asyncio.run(_drive(urls, per_process, refreshes))
        wall = time.perf_counter() - started
        chats = sum(server.stats.snapshot().answers_by_agent().values())
    errors = [e for log in logs for e in log.errors]
    firsts = [log.first_s * 1000 for log in logs if log.first_s is not None]
    refresh = [t * 1000 for log in logs for t in log.refresh_s]
    row.checks += [
        check("chat requests at the LLM server (all sessions)", [float(chats)], "",
              Target("==", CHAT_PER_ANALYSIS)),
        check("errors", [float(len(errors))], "", Target("==", 0)),
        check("sessions that loaded the page", [float(len(firsts))], f"of {sessions}",
              Target("==", sessions)),
        check("refresh (cache hit): p95", [percentile(refresh, 95)] if refresh else [0.0], "ms",
              binding=False, note="full rerun of the Live page, send → script_finished"),
        check("refresh (cache hit): median", [percentile(refresh, 50)] if refresh else [0.0],
              "ms", binding=False),
        check("first load (one analysis for all): p95", [percentile(firsts, 95)] if firsts
              else [0.0], "ms", binding=False, note="includes the one analysis ≈ 1.4 s"),
        check("whole row wall", [wall], "s", binding=False),
    ]  # fmt: skip
    row.details = {
        "errors": errors[:10],
        "refresh_ms_max": round(max(refresh), 1) if refresh else None,
        "first_load_ms_max": round(max(firsts), 1) if firsts else None,
    }
    return row
