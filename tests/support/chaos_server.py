"""A misbehaving LLM server on 127.0.0.1 for reliability tests (not the simulated backend).

It speaks Ollama's `POST /api/chat` (NDJSON) and OpenAI's `POST /v1/chat/completions`
(SSE), streaming, and answers every agent with a valid analysis unless a fault is set for
it: the `X-Quorum-Agent` request header names the agent, `faults` maps agent → fault kind.

Nothing here sleeps to wait for the client. Hangs park on an Event that `__exit__` sets
(and end early when the client hangs up); the slow drip's 0.5 s is the server's own pacing.
It counts open connections, so a test can assert that a client left none behind.

    with ChaosServer({"SecurityAnalyst": "hang_mid"}) as server:
        ... OllamaBackend(server.url) or OpenAICompatBackend(server.url + "/v1") ...
        assert server.wait_idle(2.0)
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.run.agents import DEFAULT_MODEL
from tests.support.serving import ServedInThread, peer_closed

FAULTS: tuple[str, ...] = (
    "hang_headers",  # accept the request, never send a status line
    "hang_mid",  # headers and one token, then nothing
    "http_500",
    "busy_once",  # 503 without Retry-After, then a normal answer
    "busy_retry_after_once",  # 503 with Retry-After: 1, then a normal answer
    "busy_forever",  # 503 without Retry-After, every time
    "model_404",
    "bad_json_line",  # a line of broken JSON in the stream's own framing
    "bad_framing",  # the other protocol's framing (NDJSON to an SSE client and vice versa)
    "error_mid",  # {"error": ...} after the first token, HTTP 200
    "reset_mid",  # TCP reset after the first token
    "not_json",  # a complete, valid stream whose answer is prose, not JSON
    "endless",  # tokens as fast as the socket takes them, never done
    "oversize",  # one line of 64 MiB without a newline
    "slow_drip",  # one token every 0.5 s, never done
)
# Not in the matrix: a server that closes a kept-alive connection instead of answering its
# second request (what llama.cpp's server does to idle keep-alive connections).
DROP_REUSED = "drop_reused"
# Not in the matrix either: HTTP 500 whose body quotes the credentials the request carried
# (servers do: "Incorrect API key provided: sk-..."), to prove the client scrubs them.
ECHO_SECRETS = "echo_secrets"
DRIP_INTERVAL_S = 0.5
OVERSIZE_BYTES = 64 * 1024 * 1024
# A fault that nobody releases must end the handler anyway (a broken test, not a hang).
PARK_LIMIT_S = 30.0

OLLAMA_PATH = "/api/chat"
OPENAI_PATH = "/v1/chat/completions"


def agent_answer(agent: str) -> dict[str, Any]:
    """A small valid answer: the agents' schema, or the consolidator's verdict (the ids
    of each agent's one finding: P1, I1, S1, C1, R1; ids of agents that failed are
    dropped by the runner)."""
    finding = {
        "title": f"{agent} finding",
        "observation": "cpu_util_pct is high for this host.",
        "recommendations": ["Scale out the web tier.", "Profile the hot path."],
        "severity": "HIGH",
        "confidence": 80,
        "metrics": ["cpu_util_pct"],
    }
    if agent == "Consolidator":
        groups = [[f"{letter}1"] for letter in "PISCR"]
        return {"insights": groups, "summary": "merged", "confidence": 90}
    return {"summary": f"{agent} summary", "findings": [finding]}


def split_tokens(text: str, size: int = 24) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- framing of each protocol --------------------------------------------------------------


def ollama_chunk(piece: str) -> bytes:
    obj = {"model": "m", "message": {"role": "assistant", "content": piece}, "done": False}
    return (json.dumps(obj) + "\n").encode()


def ollama_final(tokens: int) -> bytes:
    obj = {
        "model": "m",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 3_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 20,
        "prompt_eval_duration": 1_000_000,
        "eval_count": tokens,
        "eval_duration": 1_000_000,
    }
    return (json.dumps(obj) + "\n").encode()


def openai_event(obj: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def openai_chunk(piece: str) -> bytes:
    return openai_event({"choices": [{"index": 0, "delta": {"content": piece}}]})


def openai_final(tokens: int) -> bytes:
    last = openai_event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = openai_event(
        {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": tokens}}
    )
    return last + usage + b"data: [DONE]\n\n"


class ChaosServer(ServedInThread):
    """Context manager: starts on enter; on exit releases every parked handler and stops."""

    thread_name = "chaos-http"

    def __init__(
        self,
        faults: Mapping[str, str] | None = None,
        *,
        answers: Mapping[str, str] | None = None,
        port: int = 0,  # a fixed port lets a test restart "the same" server
    ) -> None:
        super().__init__()
        self.port = port
        self.faults = dict(faults or {})
        unknown = set(self.faults.values()) - {*FAULTS, DROP_REUSED, ECHO_SECRETS}
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        # agent → the exact answer text to stream (default: agent_answer as JSON)
        self.answers = dict(answers or {})
        self.requests: Counter[str] = Counter()  # per agent
        self.authorization: set[str] = set()  # every Authorization header received
        self.connections_opened = 0
        self.release = threading.Event()
        self._open = 0
        self._changed = threading.Condition()

    @property
    def open_connections(self) -> int:
        with self._changed:
            return self._open

    def wait_idle(self, timeout_s: float) -> bool:
        """True once no connection is open (the client closed them all), within `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: self._open == 0, timeout=timeout_s)

    def bind(self) -> ThreadingHTTPServer:
        return _Server(("127.0.0.1", self.port), _Handler, self)

    def stop(self) -> None:
        self.release.set()  # every parked handler ends
        super().stop()

    # -- bookkeeping used by the handler --

    def connection_changed(self, delta: int) -> None:
        with self._changed:
            self._open += delta
            if delta > 0:
                self.connections_opened += 1
            self._changed.notify_all()

    def count(self, agent: str) -> int:
        """Record one request of `agent`; returns how many it made before this one."""
        with self._changed:
            before = self.requests[agent]
            self.requests[agent] += 1
            return before

    def park(self, conn: socket.socket, seconds: float | None = None) -> bool:
        """Hold until released, the client hangs up, or `seconds` pass (the drip's pacing).
        True only when `seconds` passed (the caller may go on sending)."""
        limit = PARK_LIMIT_S if seconds is None else seconds
        deadline = time.monotonic() + limit
        while not self.release.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return seconds is not None
            if peer_closed(conn, min(left, 0.05)):
                return False
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: ChaosServer
    ) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like the real servers

    def setup(self) -> None:
        super().setup()
        self.served_on_connection = 0
        self._owner().connection_changed(+1)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._owner().connection_changed(-1)

    def _owner(self) -> ChaosServer:
        assert isinstance(self.server, _Server)
        return self.server.owner

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- routes --

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/version":
            self._send_json(200, {"version": "0.0.0-chaos"})
        elif path == "/api/tags":
            self._send_json(200, {"models": [{"name": "m"}, {"name": DEFAULT_MODEL}]})
        elif path == "/v1/models":
            self._send_json(200, {"data": [{"id": "m"}, {"id": DEFAULT_MODEL}]})
        else:
            self._send_json(404, {"error": "no such route"})

    def do_POST(self) -> None:
        owner = self._owner()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        agent = self.headers.get("X-Quorum-Agent") or "?"
        authorization = self.headers.get("Authorization") or ""
        if authorization:
            owner.authorization.add(authorization)
        fault = owner.faults.get(agent)
        earlier = owner.count(agent)
        reused = self.served_on_connection > 0
        self.served_on_connection += 1
        if path not in (OLLAMA_PATH, OPENAI_PATH):
            self._send_json(404, {"error": "no such route"})
            return
        openai = path == OPENAI_PATH
        if fault == DROP_REUSED and reused:
            self.close_connection = True  # closed without a byte: the client must retry
            return
        if fault == ECHO_SECRETS:
            echoed = f"Incorrect credentials provided: {authorization} {_basic(authorization)}"
            self._send_json(500, {"error": {"message": echoed}})
            return
        try:
            self._serve(agent, fault, openai, earlier)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _serve(self, agent: str, fault: str | None, openai: bool, earlier: int) -> None:
        owner = self._owner()
        if fault == "hang_headers":
            owner.park(self.connection)
            self.close_connection = True
            return
        if fault == "http_500":
            return self._send_json(500, {"error": "chaos: internal server error"})
        if fault == "model_404":
            return self._send_json(404, {"error": "model 'm' not found"})
        if fault == "busy_forever" or (fault == "busy_once" and earlier == 0):
            return self._send_json(503, {"error": "chaos: server busy"})
        if fault == "busy_retry_after_once" and earlier == 0:
            return self._send_json(503, {"error": "chaos: loading model"}, {"Retry-After": "1"})

        chunk, final = (openai_chunk, openai_final) if openai else (ollama_chunk, ollama_final)
        text = owner.answers.get(agent) or json.dumps(agent_answer(agent))
        if fault == "not_json":
            text = "The CPU looks busy to me, but I would not worry."
        pieces = split_tokens(text)
        content_type = "text/event-stream" if openai else "application/x-ndjson"
        self._start_chunked(content_type)

        if fault in ("hang_mid", "bad_json_line", "bad_framing", "error_mid", "reset_mid"):
            self._write(chunk(pieces[0]))
            if fault == "hang_mid":
                owner.park(self.connection)
                self.close_connection = True
                return
            if fault == "reset_mid":
                # SO_LINGER 0: close() sends RST instead of FIN, a crashed server's goodbye.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            self._write(_broken(fault, openai))
            self._end_chunked()
            return
        if fault == "endless":
            batch = b"".join(chunk("tok ") for _ in range(256))
            while not owner.release.is_set():
                self._write(batch)
            return
        if fault == "oversize":
            block = b"x" * (1024 * 1024)
            self._write(b'{"message": {"content": "' if not openai else b'data: {"choices": "')
            for _ in range(OVERSIZE_BYTES // len(block)):
                self._write(block)
            self._end_chunked()
            return
        if fault == "slow_drip":
            for piece in _forever(pieces):
                self._write(chunk(piece))
                if not owner.park(self.connection, DRIP_INTERVAL_S):
                    self.close_connection = True
                    return
        for piece in pieces:
            self._write(chunk(piece))
        self._write(final(len(pieces)))
        self._end_chunked()

    # -- bytes on the wire --

    def _send_json(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")


def _broken(fault: str, openai: bool) -> bytes:
    if fault == "bad_json_line":
        return b'data: {"choices": [{"delta": \n\n' if openai else b'{"message": {"content": \n'
    if fault == "bad_framing":  # each protocol gets the other's framing
        return ollama_chunk("x") + ollama_final(1) if openai else openai_chunk("x")
    return (
        openai_event({"error": {"message": "chaos: out of memory"}})
        if openai
        else b'{"error": "chaos: out of memory"}\n'
    )


def _basic(authorization: str) -> str:
    """The user:password inside a Basic Authorization header ('' for any other)."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return ""
    return base64.b64decode(value).decode("utf-8", "replace")


def _forever(pieces: list[str]) -> Iterator[str]:
    while True:
        yield from pieces
