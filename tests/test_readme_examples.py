"""Every command of README.md's CLI block does what its comment says.

The block is read from the README itself, so an example edited there is the example run
here. `.venv/bin/python` becomes this interpreter; a `serve-simulated` server gets a free
loopback port of its own (the README's port may be taken) and is stopped once it answers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.plumbing import free_port

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 240  # a compare at time scale 0.02 takes seconds; generous under load
SERVE_DEADLINE_S = 30.0


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## CLI\n", 1)[1].split("```\n", 2)[1]
    return [line for line in block.splitlines() if line.startswith(".venv/bin/python -m engine")]


def argv(line: str) -> list[str]:
    command = line.split("#", 1)[0]
    return [sys.executable, *shlex.split(command)[1:]]


def run(line: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"QUORUM_DATA_DIR": str(tmp_path / "data"), "OLLAMA_HOST": "127.0.0.1:9"}
    return subprocess.run(
        argv(line), cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip


def check_analyze_table(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert "SIMULATED" in done.stdout


def check_compare_table(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert re.search(r"speedup \(sequential ÷ parallel\): \d+(\.\d+)?×", done.stdout)


def check_live_json(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["source"] == "live" and data["status"] == "success"


def check_hang(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr  # the run succeeds: only one agent hung
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line.split()}
    assert rows.get("SecurityAnalyst") == "timeout", done.stdout
    others = ("PerformanceAnalyst", "InfrastructureExpert", "CostOptimizer", "ReliabilityEngineer")
    assert all(rows.get(name) == "ok" for name in others), done.stdout
    assert "quorum: SecurityAnalyst timeout at 2." in done.stderr  # cut at its 2 s timeout


def check_snapshot(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["mem_oom_kills"] > 0 and data["source"] == "scenario:memory-leak"


def check_compare_json(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # stdout is the JSON alone
    assert data["sequential"]["consolidation"]["summary"] is None  # the full "before"
    assert "quorum: [parallel] finished: wall " in done.stderr


CHECKS = {
    "a table, labelled SIMULATED": check_analyze_table,
    "before → after, speedup": check_compare_table,
    "this host, the JSON contract": check_live_json,
    "one hung agent cut at 2 s, 4/5 answer": check_hang,
    "the snapshot JSON": check_snapshot,
    "progress on stderr, JSON on stdout": check_compare_json,
}


def serve_answers(line: str) -> None:
    """Start the server on a free port, wait until it answers /api/version, stop it."""
    args = argv(line)
    if "--port" in args:
        del args[args.index("--port") : args.index("--port") + 2]
    port = free_port()
    proc = subprocess.Popen([*args, "--port", str(port)], cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SERVE_DEADLINE_S
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1.0)
                assert answer.status_code == 200 and "simulated" in answer.text
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{line}: no answer on port {port}")
                try:  # waits on the process (a crash fails at once), not a bare sleep
                    code = proc.wait(timeout=0.05)
                    pytest.fail(f"{line}: exited with {code}")
                except subprocess.TimeoutExpired:
                    continue
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_cli_example_has_a_check() -> None:
    lines = readme_commands()
    assert len(lines) == 8
    for line in lines:
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        assert comment in CHECKS or "serve-simulated" in line, f"unchecked example: {line}"


@pytest.mark.parametrize("line", readme_commands(), ids=lambda line: line.split("#")[0][26:70])
def test_the_readme_example_does_what_its_comment_says(line: str, tmp_path: Path) -> None:
    if " serve-simulated " in line:
        serve_answers(line)
        return
    comment = line.split("#", 1)[1].strip()
    CHECKS[comment](run(line, tmp_path))
