from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from engine.cli import main

FAST = ["--sim-time-scale", "0.01", "--sim-profile", "gpu"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QUORUM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_analyze_json_contract(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    assert main(["analyze", "--scenario", "cpu-saturation", "--json", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "success" and data["mode"] == "parallel"
    assert data["backend"]["simulated"] is True and data["backend"]["kind"] == "simulated"
    assert data["cache"] == {"hit": False, "age_s": None, "ttl_s": 300.0}
    assert len(data["agents"]) == 5 and data["consolidation"]["method"] == "llm"
    assert (data_dir / "history.jsonl").exists()
    # the same call again is a cache hit
    assert main(["analyze", "--scenario", "cpu-saturation", "--json", *FAST]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cache"]["hit"] is True and again["execution_time_s"] < 0.5


def test_analyze_table_is_labelled_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--scenario", "disk-io-bound", "--no-cache", *FAST]) == 0
    out = capsys.readouterr().out
    assert "[SIMULATED]" in out and "tier excellent" in out
    assert "[CRITICAL] Disk" in out
    assert "Consolidator's verdict: " in out


def test_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--scenario", "memory-leak", "--json", "--no-cache", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"single", "sequential", "parallel", "cached", "speedup"}
    assert data["single"]["tier"] == "single" and data["sequential"]["mode"] == "sequential"
    assert data["cached"]["cache"]["hit"] is True
    assert data["speedup"] == pytest.approx(
        data["sequential"]["execution_time_s"] / data["parallel"]["execution_time_s"], rel=0.01
    )


def test_compare_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--scenario", "healthy", *FAST]) == 0
    out = capsys.readouterr().out
    assert "speedup (sequential ÷ parallel)" in out and "SIMULATED" in out


def test_fault_injection_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["analyze", "--scenario", "error-spike", "--json", "--no-cache", *FAST]
    assert main([*argv, "--sim-fault", "SecurityAnalyst=error", "--quorum", "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["missing_roles"] == ["security"] and data["tier"] == "good"


def test_snapshot_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "--scenario", "healthy"]) == 0
    assert json.loads(capsys.readouterr().out)["cpu_util_pct"] == 23


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sim-fault", "SecurityAnalyst"], "--sim-fault: expected AGENT=KIND"),
        (["--sim-num-parallel", "0"], "num_parallel"),
        (["--quorum", "0"], "quorum"),
        (["--ttl", "0"], "ttl"),
        (["--backend", "openai"], "base-url: required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--scenario", "healthy", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_bad_snapshot_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"cpu_util_pct": "lots"}')
    assert main(["analyze", "--snapshot", str(path)]) == 2
    assert "cpu_util_pct: must be a number" in capsys.readouterr().err


def test_unreachable_ollama_honours_ollama_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    assert main(["analyze", "--backend", "ollama", "--scenario", "healthy"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"127.0.0.1:{port}" in err and "\n" not in err


def test_consolidation_style_is_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    for style, has_summary in (("compact", True), ("full", False)):
        args = ["analyze", "--scenario", "cpu-saturation", "--json", "--no-cache", *FAST]
        assert main([*args, "--consolidation", style]) == 0
        consolidation = json.loads(capsys.readouterr().out)["consolidation"]
        assert consolidation["method"] == "llm"
        assert (consolidation["summary"] is not None) == has_summary


def test_bad_server_slots_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "--scenario", "healthy", "--server-slots", "zero", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: server slots: must be 'auto' or a whole number ≥ 1, got 'zero'\n"


def test_one_slot_run_says_so_and_what_more_slots_would_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["analyze", "--scenario", "cpu-saturation", "--sim-time-scale", "0.02"]
    code = main([*args, "--sim-num-parallel", "1", "--no-cache"])
    out = capsys.readouterr().out
    assert code == 0
    assert "server slots: 1 (the simulated server's num_parallel)" in out
    assert "The server ran the 5 agents one at a time" in out and "5 slots would take ≈" in out
