"""A canned-response HTTP/1.1 server on 127.0.0.1 for protocol tests.

Each route answers with a scripted status, headers and body chunks, sent with
`Transfer-Encoding: chunked` so a client sees them arrive one by one. A `threading.Event`
among the chunks holds the stream until the test sets it, which lets a test act mid-stream
without sleeping. Requests are recorded (method, path, headers, body).

    with LoopbackServer({"/api/chat": Route(chunks=[b'{"done":true}\\n'])}) as server:
        ... call server.url ...
        assert server.requests[0].json["model"] == "m"
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.serving import ServedInThread, peer_closed

# A test that forgets to set its gate must fail, not hang the suite.
GATE_TIMEOUT_S = 10.0

Chunk = bytes | str | threading.Event


@dataclass
class Route:
    status: int = 200
    chunks: Sequence[Chunk] = ()
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    # Close the socket instead of sending the terminating chunk (a server dying mid-body).
    abort: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class LoopbackServer(ServedInThread):
    """Context manager: starts on enter, always shuts down on exit."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        super().__init__()
        self.routes = dict(routes)
        self.requests: list[RecordedRequest] = []
        # Set when the server notices a client hang up mid-response.
        self.client_disconnected = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def bind(self) -> ThreadingHTTPServer:
        return _Server(("127.0.0.1", 0), _Handler, self)

    def stop(self) -> None:
        self._closing.set()  # release handlers still parked on a gate
        super().stop()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def hold(self, gate: threading.Event, conn: socket.socket) -> bool:
        """Wait for the test to set `gate`; False if the client hung up or we are closing."""
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not gate.wait(0.005):
            if peer_closed(conn):
                self.client_disconnected.set()
                return False
            if self._closing.is_set() or time.monotonic() > deadline:
                return False
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        owner: LoopbackServer,
    ) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies and keep-alive, like real servers

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _serve(self) -> None:
        assert isinstance(self.server, _Server)
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner.record(RecordedRequest(self.command, self.path, headers, body))

        route = owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            route = Route(status=404, chunks=[b'{"error":"no such route in LoopbackServer"}'])
        self.send_response(route.status)
        for name, value in route.headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in route.chunks:
                if isinstance(chunk, threading.Event):
                    if not owner.hold(chunk, self.connection):
                        self.close_connection = True
                        return
                    continue
                data = chunk.encode() if isinstance(chunk, str) else chunk
                if data:  # an empty chunk would end the body early
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            if route.abort:
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            owner.client_disconnected.set()
            self.close_connection = True
