"""Engine processes sharing one real redis-server and one simulated LLM server.

Each process is `tests.support.redis_worker` (its own Engine, Redis cache and lease); the test
process runs the simulated server and counts the chat requests that reach it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.redis_server import LineReader
from engine.simulator import SimConfig, SimulatedOllamaServer

REPO = Path(__file__).resolve().parents[2]
CHATS_PER_ANALYSIS = 6  # five specialists and the consolidator


class Worker:
    def __init__(self, url: str, sim_url: str, scale: float, callers: int, lease_s: float) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "QUORUM_CACHE_URL": url,
            "QUORUM_TEST_LEASE_S": str(lease_s),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.redis_worker", sim_url, str(scale), str(callers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, text=True, cwd=REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out, self.err = LineReader(self.proc.stdout), LineReader(self.proc.stderr)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def answers(self, timeout_s: float = 60) -> list[dict[str, object]]:
        lines = self.out.wait_for("done", timeout_s)
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@contextmanager
def workers(*specs: tuple[str, str, float, int, float]) -> Iterator[list[Worker]]:
    started = [Worker(*spec) for spec in specs]
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def test_two_processes_of_25_callers_make_one_fan_out(redis_url: str) -> None:
    config = SimConfig(profile="gpu", num_parallel=6, time_scale=0.05)
    with SimulatedOllamaServer(config) as server:
        spec = (redis_url, server.url, 0.05, 25, 10.0)
        with workers(spec, spec) as procs:
            for proc in procs:
                proc.out.wait_for("ready", 60)
            server.stats.reset()
            for proc in procs:
                proc.go()
            answers = [a for proc in procs for a in proc.answers()]
        stats = server.stats.snapshot()
    assert len(answers) == 50 and {a["status"] for a in answers} == {"success"}
    assert sum(stats.answers_by_agent().values()) == CHATS_PER_ANALYSIS  # exactly one fan-out
    assert sum(not a["hit"] for a in answers) == 1


def test_leader_killed_mid_run_a_follower_takes_over_within_the_lease(redis_url: str) -> None:
    lease = 1.0
    # A run of ≈ 5 s: slots at full speed (this is about the lease, not the CPU's curve).
    config = SimConfig(profile="baseline", num_parallel=6, time_scale=0.2, share_compute=False)
    with (
        SimulatedOllamaServer(config) as server,
        workers((redis_url, server.url, 0.2, 1, lease), (redis_url, server.url, 0.2, 1, lease)) as (
            leader,
            follower,
        ),
    ):
        leader.out.wait_for("ready", 60)
        follower.out.wait_for("ready", 60)
        leader.go()
        leader.out.wait_for("started", 30)  # the leader holds the lease and runs
        follower.go()
        follower.err.wait_for("waiting for another replica's run", 30)
        leader.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        follower.out.wait_for("started", 30)
        took_over = time.monotonic() - killed
        answers = follower.answers()
    print(f"follower took over {took_over:.3f} s after the kill (lease {lease} s)")
    assert took_over <= lease + 0.5, f"follower took over after {took_over:.2f} s"
    assert answers == [{"hit": False, "status": "success", "ttl_s": 300.0}]
