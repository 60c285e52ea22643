from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.plumbing import free_port
from engine.cli import format_compare, main
from engine.report.compare import COMPARE_STEPS, Comparison

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
    variants = {"full_cold", "compact_cold", "compact_warm"}  # the consolidation variants
    assert set(data) == {"single", "sequential", "parallel", "cached", "speedup", *variants}
    assert data["single"]["tier"] == "single" and data["sequential"]["mode"] == "sequential"
    assert data["cached"]["cache"]["hit"] is True
    assert data["speedup"] == pytest.approx(
        data["sequential"]["execution_time_s"] / data["parallel"]["execution_time_s"], rel=0.01
    )


def test_compare_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--scenario", "healthy", *FAST]) == 0
    out = capsys.readouterr().out
    assert "speedup (sequential ÷ parallel)" in out and "SIMULATED" in out


def test_compare_json_runs_the_consolidation_variants_fresh(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The baseline profile: its answers arrive tens of ms apart at this scale, so there is
    # time for warm-ups between them (on `gpu` at 0.01 all five land within a few ms).
    baseline = ["--sim-profile", "baseline", "--sim-time-scale", "0.02"]
    assert main(["compare", "--scenario", "cpu-saturation", "--json", *baseline]) == 0
    data = json.loads(capsys.readouterr().out)
    full, cold, warm = data["full_cold"], data["compact_cold"], data["compact_warm"]
    for run in (full, cold, warm):
        assert run["mode"] == "parallel" and run["cache"]["hit"] is False
        assert run["consolidation"]["method"] == "llm" and run["agents_participated"] == 5
    assert full["consolidation"]["summary"] is None  # the full consolidation writes no verdict
    assert cold["consolidation"]["summary"] and warm["consolidation"]["summary"]
    assert not full["warmups"] and not cold["warmups"] and warm["warmups"]
    # The compact prompt is shorter, and warm-ups leave little of it to evaluate.
    evaluated = [r["consolidation"]["prompt_tokens"] for r in (full, cold, warm)]
    assert evaluated[0] > evaluated[1] > evaluated[2]
    assert warm["consolidation"]["cached_tokens"] > cold["consolidation"]["cached_tokens"]


def test_compare_table_shows_the_consolidation_variants_projected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compare", "--scenario", "cpu-saturation", *FAST]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "consolidation: full vs compact, cold vs warm (fresh parallel runs)" in lines
    assert "(in brackets: projected to real time (simulated), time scale 0.01)" in lines
    header = next(line for line in lines if line.startswith("variant"))
    assert "after last agent" in header and "prompt evaluated" in header
    for label in ("full, no warm-up (before)", "compact, no warm-up", "compact, warmed"):
        (row,) = [line for line in lines if line.startswith(label)]
        # e.g. "0.02s (2.0s)": the projection is the measured time ÷ 0.01
        pairs = re.findall(r"(\d+\.\d+)s \((\d+\.\d+)s\)", row)
        assert len(pairs) == 2
        for scaled, real in pairs:
            assert float(real) == pytest.approx(float(scaled) / 0.01, abs=0.55)
    assert any(line.startswith("projected to real time (simulated): sequential") for line in lines)


def test_compare_table_at_real_time_has_no_projection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compare", "--scenario", "healthy", "--json", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    out = format_compare(
        Comparison.from_dict(data)
    )  # what a real server's (or time scale 1) comparison prints
    assert "projected" not in out and "compact, warmed (default)" in out


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
    port = free_port()  # a port nobody listens on
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


def test_compare_prints_progress_on_stderr_and_json_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["compare", "--scenario", "cpu-saturation", "--sim-time-scale", "0.005", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)  # stdout is the JSON alone
    # the plan's "before": one agent after another, the full consolidation
    assert data["sequential"]["mode"] == "sequential"
    assert data["sequential"]["consolidation"]["summary"] is None  # full: no verdict line
    lines = captured.err.splitlines()
    finished = [line for line in lines if " finished: wall " in line]
    assert [line.split("]")[0] for line in finished] == [f"quorum: [{run}" for run in COMPARE_STEPS]
    agents = [line for line in lines if line.startswith("quorum: [sequential] ") and " at " in line]
    assert len(agents) == 5 + 1  # five agents and the Consolidator, one line each
