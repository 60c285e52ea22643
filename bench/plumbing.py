"""Loopback plumbing the bench and the tests share: a free port, a child process stopped
for sure.

It lives in bench/ because the tests already import bench's helpers (bench/redis_server.py,
bench/llama_server.py) and bench must never import tests. Standard library only:
`python3 bench/llama_build.py` imports it before any virtualenv exists.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on now: bound, then released (a server started
    next takes it, a client connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """Terminate `proc`, kill it if it is still there after `grace_s`, and return once it
    is gone (so its port refuses connections)."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)
