"""Named bad snapshots: each is rejected with one field-level line by the loader, the CLI
(`python -m engine analyze --snapshot FILE`: exit 2, no traceback) and the dashboard's
upload widget — never a traceback, never a hang, and memory bounded by the size cap."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from engine import cli
from engine.sources.snapshot import MAX_SNAPSHOT_BYTES, SCENARIOS, SnapshotError, load_file
from tests.support.app_test import new_app, uploader
from ui import safe

REPO = Path(__file__).resolve().parents[2]
DEEP = 100_000


def good() -> dict[str, Any]:
    return {**SCENARIOS["healthy"], "host": "web-1", "cpu_count": 4, "timestamp": 1.0}


def doc(**change: Any) -> bytes:
    return json.dumps({**good(), **change}).encode()


def with_raw(field: str, raw: str) -> bytes:
    """The good snapshot with `field` set to raw JSON text (NaN, 1e400, ... as written)."""
    return doc(**{field: "RAW"}).replace(b'"RAW"', raw.encode())


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in good().items() if k != field}).encode()


# name → (file bytes, the field the message names, words in the message)
BAD: dict[str, tuple[bytes, str, str]] = {
    "empty": (b"", "file", "is empty"),
    "only-whitespace": (b" \n\t\n", "file", "is empty"),
    "array": (b"[1, 2]", "snapshot", "must be a JSON object"),
    "string": (b'"cpu high"', "snapshot", "must be a JSON object"),
    "null": (b"null", "snapshot", "must be a JSON object"),
    "number": (b"42", "snapshot", "must be a JSON object"),
    "truncated": (doc()[:-20], "file", "not valid JSON (line 1"),
    "trailing-garbage": (doc() + b"}", "file", "not valid JSON"),
    "nul-bytes": (b"\x00" * 64, "file", "not valid JSON"),
    "binary": (bytes(range(256)) * 4, "file", "not UTF-8 text"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "file", "not UTF-8 text"),
    "utf-16": (json.dumps(good()).encode("utf-16"), "file", "not UTF-8 text"),
    "deep-array": (b"[" * DEEP + b"]" * DEEP, "file", "nested too deeply"),
    "deep-object-in-field": (
        with_raw("cpu_util_pct", '{"a":' * DEEP + "1" + "}" * DEEP),
        "file",
        "nested too deeply",
    ),
    "number-as-string": (doc(cpu_util_pct="50"), "cpu_util_pct", "must be a number"),
    "boolean": (doc(mem_util_pct=True), "mem_util_pct", "must be a number"),
    "array-value": (doc(disk_util_pct=[1, 2]), "disk_util_pct", "got a JSON array"),
    "object-value": (doc(net_util_pct={"v": 1}), "net_util_pct", "got a JSON object"),
    "null-required": (doc(disk_util_pct=None), "disk_util_pct", "is required"),
    "missing-required": (without("mem_swap_pct"), "mem_swap_pct", "is required"),
    "negative": (doc(net_drops_per_s=-5), "net_drops_per_s", "must be ≥ 0"),
    "over-100-percent": (doc(cpu_util_pct=140), "cpu_util_pct", "must be ≤ 100"),
    "nan": (with_raw("cpu_util_pct", "NaN"), "cpu_util_pct", "must be a finite number"),
    "infinity": (with_raw("disk_queue_depth", "Infinity"), "disk_queue_depth", "finite"),
    "minus-infinity": (with_raw("mem_oom_kills", "-Infinity"), "mem_oom_kills", "finite"),
    "1e400": (with_raw("net_errors_per_s", "1e400"), "net_errors_per_s", "finite"),
    "400-digit-integer": (
        with_raw("p95_latency_ms", "9" * 400),
        "p95_latency_ms",
        "must be a finite number",
    ),
    "5000-digit-integer": (with_raw("p95_latency_ms", "9" * 5000), "file", "too many digits"),
    # Finite, but its arithmetic overflows (1e308 / 0.1 quantum is inf): issue 18.
    "1e308-no-maximum": (doc(cpu_load_per_core=1e308), "cpu_load_per_core", "must be ≤ 1e+15"),
    "1e308-with-maximum": (doc(cpu_util_pct=1e308), "cpu_util_pct", "must be ≤ 100"),
    "2e15-request-rate": (doc(request_rate_per_s=2e15), "request_rate_per_s", "must be ≤ 1e+15"),
    "-1e308": (doc(mem_oom_kills=-1e308), "mem_oom_kills", "must be ≥ 0"),
    "host-lone-surrogate": (with_raw("host", '"web-\\ud800"'), "host", "invalid Unicode"),
    "host-terminal-escape": (doc(host="\x1b]0;pwned\x07web"), "host", "control characters"),
    "huge-string-value": (doc(cpu_util_pct="x" * 500_000), "cpu_util_pct", "must be a number"),
    "huge-host": (doc(host="h" * 10_000), "host", "at most 253 characters"),
    "host-with-newline": (doc(host="web-1\nrm -rf /"), "host", "control characters"),
    "host-not-a-string": (doc(host=12), "host", "non-empty string"),
    "unknown-field": (doc(cpu_utilisation=3), "cpu_utilisation", "unknown field"),
    "unknown-field-with-newline": (doc(**{"bad\nname": 1}), "bad\\nname", "unknown field"),
    "unknown-field-huge-name": (doc(**{"k" * 10_000: 1}), "k" * 59 + "…", "unknown field"),
    "cpu-count-zero": (doc(cpu_count=0), "cpu_count", "≥ 1"),
    "cpu-count-fraction": (doc(cpu_count=2.5), "cpu_count", "whole number"),
    "cpu-count-huge": (doc(cpu_count=10**30), "cpu_count", "at most"),
    "timestamp-string": (doc(timestamp="yesterday"), "timestamp", "unix seconds"),
    "timestamp-nan": (with_raw("timestamp", "NaN"), "timestamp", "between 0 and"),
    "timestamp-negative": (doc(timestamp=-1), "timestamp", "between 0 and"),
    "source-object": (doc(source={"a": 1}), "source", "printable string"),
}
LARGE = "50-MB-file"  # built on disk by the tests that need it, not kept in memory here


def test_there_are_at_least_thirty_named_bad_snapshots() -> None:
    assert len(BAD) + 1 >= 30


def check_message(name: str, message: str, field: str, words: str) -> None:
    assert "\n" not in message and "Traceback" not in message, f"{name}: {message!r}"
    assert len(message) <= 400, f"{name}: {len(message)} chars"
    assert message.startswith(f"{field}: ") and words in message, f"{name}: {message!r}"


@pytest.mark.parametrize("name", sorted(BAD))
def test_loader_rejects_with_a_field_level_line(name: str, tmp_path: Path) -> None:
    data, field, words = BAD[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(data)
    with pytest.raises(SnapshotError) as caught:
        load_file(path)
    assert caught.value.field == field, f"{name}: {caught.value}"
    check_message(name, str(caught.value), field, words)


def write_large(path: Path) -> Path:
    """A 50 MB file: a valid snapshot padded with whitespace (written in 1 MiB pieces)."""
    block = b" " * 2**20
    with path.open("wb") as out:
        out.write(doc())
        for _ in range(50):
            out.write(block)
    return path


def test_a_50_mb_file_is_rejected_after_reading_only_the_cap(tmp_path: Path) -> None:
    path = write_large(tmp_path / "large.json")
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError) as caught:
            load_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    check_message(LARGE, str(caught.value), "file", "larger than 1024 KiB")
    assert peak < 4 * MAX_SNAPSHOT_BYTES, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", sorted(BAD))
def test_cli_exits_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, field, words = BAD[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(data)
    code = cli.main(["analyze", "--snapshot", str(path), "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: snapshot ") and "\n" not in err, f"{name}: {err!r}"
    check_message(name, err.removeprefix("error: snapshot "), field, words)


@pytest.mark.parametrize("name", ["binary", "deep-array", LARGE])
def test_cli_in_a_real_process_never_shows_a_traceback(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.json"
    if name == LARGE:
        write_large(path)
    else:
        path.write_bytes(BAD[name][0])
    done = subprocess.run(
        [sys.executable, "-m", "engine", "analyze", "--snapshot", str(path), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"QUORUM_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: snapshot file: ")


def test_upload_widget_rejects_each_with_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at: AppTest = new_app(monkeypatch, tmp_path).run()
    at.sidebar.segmented_control(key="source_kind").set_value("upload").run()
    large = write_large(tmp_path / "large.json").read_bytes()
    cases = {**{name: (data, field) for name, (data, field, _) in BAD.items()}}
    cases[LARGE] = (large, "file")
    for name, (data, field) in cases.items():
        uploader(at).set_value((f"{name}.json", data, "application/json")).run()
        assert not at.exception, f"{name}: {at.exception}"
        sidebar = [e.value for e in at.sidebar.error]
        assert len(sidebar) == 1, f"{name}: {sidebar}"
        assert sidebar[0].startswith(f"Field **{safe.md(field)}**"), f"{name}: {sidebar[0]!r}"
        assert "\n" not in sidebar[0]
        assert not at.status, f"{name}: something was analysed"
