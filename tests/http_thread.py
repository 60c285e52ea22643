"""Plumbing shared by the loopback test servers: serve in a daemon thread, stop for sure,
and notice a client that hung up."""

from __future__ import annotations

import select
import socket
import threading
from socketserver import BaseServer


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
