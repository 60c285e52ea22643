"""A real `redis-server` on 127.0.0.1, for the Redis tests and the bench's R1 row.

`RedisServer` starts Debian's redis-server on a free loopback port in a directory of the
caller's (no persistence), with a password, and waits until it logs "Ready to accept
connections" (a real condition, bounded). It can be stopped and started again on the
same port (a Redis outage mid-run). `LineReader` waits for a child process's lines.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from bench.plumbing import free_port, stop_process

READY_TIMEOUT_S = 15.0
PASSWORD = "s3cret-Redis-PW-7f3a"  # the tests search every output for this string
NOT_INSTALLED = "not measured: redis-server not installed (apt-get install redis-server)"


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def redis_in_scratch(stack: ExitStack, prefix: str) -> tuple[Path, RedisServer] | None:
    """A scratch directory and a redis-server started in it, both undone when `stack`
    closes; None without the binary (a bench row is then not measured)."""
    binary = redis_server_binary()
    if binary is None:
        return None
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    redis = RedisServer(binary, scratch).start()
    stack.callback(redis.stop)
    return scratch, redis


class RedisServer:
    def __init__(self, binary: str, directory: Path, password: str = PASSWORD) -> None:
        self.binary = binary
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            "--requirepass", self.password, "--daemonize", "no", "--loglevel", "notice",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            LineReader(self.proc.stdout).wait_for("Ready to accept connections", READY_TIMEOUT_S)
        except AssertionError as exc:
            self.stop()
            raise RuntimeError(f"redis-server did not start: {exc}") from None

    def stop(self) -> None:
        """Stop it and wait until it is gone (so its port refuses connections)."""
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None  # its stdout ends with it; the reader thread then stops


class LineReader:
    """The lines a child writes to one of its pipes, read by a thread into a queue, so a
    test can wait for a given line with a deadline (never a sleep)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # the stream ended

    def wait_for(self, needle: str, timeout_s: float = 30.0) -> list[str]:
        """Lines up to and including the first that contains `needle`."""
        deadline = time.monotonic() + timeout_s
        got: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.lines.put(None)
                break
            got.append(line)
            self.seen.append(line)
            if needle in line:
                return got
        raise AssertionError(f"no line with {needle!r} within {timeout_s} s; got: {got[-8:]}")
