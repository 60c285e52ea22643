"""How the loopback test servers run: a context manager that always stops what it started,
a ThreadingHTTPServer served by a daemon thread, and a client that hung up, noticed."""

from __future__ import annotations

import select
import socket
import threading
from abc import ABC, abstractmethod
from http.server import ThreadingHTTPServer
from socketserver import BaseServer
from types import TracebackType
from typing import Self


def serve_in_thread(httpd: BaseServer, name: str) -> threading.Thread:
    # A short poll interval keeps shutdown (and so each test) fast.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name=name, daemon=True
    )
    thread.start()
    return thread


def stop(httpd: BaseServer | None, thread: threading.Thread | None) -> None:
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()
    if thread is not None:
        thread.join()


def peer_closed(conn: socket.socket, wait_s: float = 0.0) -> bool:
    """True once the client closed its end (waits up to `wait_s` for it)."""
    readable, _, _ = select.select([conn], [], [], wait_s)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Running(ABC):
    """A test server as a context manager: `start()` on enter, `stop()` on exit, also when
    the test fails."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServedInThread(Running):
    """A ThreadingHTTPServer on 127.0.0.1 (`bind()` makes it), served by a daemon thread."""

    thread_name = "loopback-http"

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def bind(self) -> ThreadingHTTPServer: ...

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._httpd = self.bind()
        self._thread = serve_in_thread(self._httpd, self.thread_name)

    def stop(self) -> None:
        stop(self._httpd, self._thread)
