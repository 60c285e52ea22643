from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from engine.store import history
from engine.store.history import History
from tests.support.results import a_result


def test_append_and_load_newest_first(tmp_path: Path) -> None:
    h = History(tmp_path / "h.jsonl")
    first, second = a_result("healthy"), a_result("cpu-saturation")
    h.append(first)
    h.append(second)
    loaded = h.load()
    assert [r.snapshot_key for r in loaded] == [second.snapshot_key, first.snapshot_key]
    assert loaded[0] == second
    assert len(h.load(limit=1)) == 1


def test_torn_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    h = History(path)
    h.append(a_result())
    with open(path, "a") as fh:
        fh.write('{"status": "succ')
    assert len(h.load()) == 1


def test_trim_keeps_the_newest(tmp_path: Path) -> None:
    result = a_result()
    line_bytes = len(json.dumps(result.to_dict(), separators=(",", ":"))) + 1
    h = History(tmp_path / "h.jsonl", max_entries=3, max_bytes=5 * line_bytes)
    for i in range(8):
        result.execution_time_s = float(i)
        h.append(result)
    kept = [r.execution_time_s for r in h.load()]
    assert 3 <= len(kept) <= 5 and kept[0] == 7.0


def test_exports(tmp_path: Path) -> None:
    results = [a_result(), a_result("memory-leak")]
    data = json.loads(history.to_json(results))
    assert [d["snapshot_key"] for d in data] == [r.snapshot_key for r in results]
    rows = list(csv.DictReader(io.StringIO(history.to_csv(results))))
    assert len(rows) == 2 and set(rows[0]) == set(history.CSV_COLUMNS)
    assert rows[1]["tier"] == "excellent"


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert History(tmp_path / "none.jsonl").load() == []


APPENDER = """
import sys
from engine.store.history import History
from engine.records import AnalysisResult
import json
path, tag, count, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
template = json.loads(sys.stdin.readline())  # then the start signal is this line's arrival
h = History(path, max_entries=40, max_bytes=max_bytes)
for i in range(count):
    r = AnalysisResult.from_dict(template)
    r.collaboration_summary = f"{tag}:{i}:" + tag * 60_000  # far beyond any pipe or buffer
    h.append(r)
print("done", flush=True)
"""


def test_two_processes_appending_and_trimming_never_interleave_a_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import subprocess
    import sys

    path = tmp_path / "h.jsonl"
    count = 60
    template = json.dumps(a_result().to_dict()) + "\n"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    max_bytes = 50 * 62_000  # trims happen while the other process appends
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), tag, str(count), str(max_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        for tag in ("A", "B")
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(template)
        proc.stdin.flush()
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs) and outs == ["done\n", "done\n"]
    raw = path.read_bytes().splitlines()
    loaded = History(path).load()
    assert len(loaded) == len(raw) >= 40 and "skipped" not in caplog.text
    for r in loaded:  # every line whole: its tag from start to end
        tag = r.collaboration_summary[0]
        assert r.collaboration_summary.endswith(tag * 60_000)
    newest: list[int] = []
    for tag in ("A", "B"):
        seen = [
            int(r.collaboration_summary.split(":")[1])
            for r in reversed(loaded)
            if r.collaboration_summary.startswith(f"{tag}:")
        ]
        assert seen == sorted(seen)  # each process's lines in the order it wrote them
        newest += seen[-1:]
    # Trimming keeps the newest: the last line of whichever process finished last.
    assert count - 1 in newest
    assert not list(tmp_path.glob(".h.jsonl.*"))  # no trim leftovers


FULL_DISK = """
import logging, resource, signal, sys, json
from engine.store.history import History
from engine.store.disk import ResultCache
from engine.records import AnalysisResult
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # the disk is "full" at `limit`
result = AnalysisResult.from_dict(json.loads(sys.stdin.readline()))
h = History(sys.argv[1])
for _ in range(3):
    h.append(result)
cache = ResultCache(sys.argv[2])
for _ in range(3):
    cache.set("k", {"big": "x" * 50_000})
print(json.dumps({"cached": cache.get("k") is not None, "degraded": cache.degraded is not None}))
"""


def test_a_full_disk_loses_nothing_already_written_and_warns_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "h.jsonl"
    h = History(path)
    for name in ("healthy", "memory-leak", "error-spike"):
        h.append(a_result(name))
    before = path.read_bytes()
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    limit = len(before) + 100  # room for part of one more line, not for a whole one
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path), str(tmp_path / "cache"), str(limit)],
        input=json.dumps(a_result("cpu-saturation").to_dict()) + "\n",
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"cached": False, "degraded": True}
    warnings = done.stderr.strip().splitlines()
    assert sum("history not written" in w for w in warnings) == 1
    assert sum("result cache disabled" in w for w in warnings) == 1
    assert path.read_bytes() == before  # the torn part of the short write was undone
    assert len(History(path).load()) == 3


def test_unwritable_history_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    h = History(blocker / "h.jsonl")
    for _ in range(3):
        h.append(a_result())
    assert h.degraded is not None and h.load() == []
    assert caplog.text.count("history not written") == 1
    folder = History(tmp_path)  # a directory where the file should be
    folder.append(a_result())
    assert folder.degraded is not None


def test_exports_say_which_system_when_and_link_to_the_run() -> None:
    result = a_result("memory-leak")
    result.run_id, result.host, result.source = "abc123", "db-1", "scenario:memory-leak"
    result.created_at = 1_796_409_433.0  # 2026-12-04T18:37:13Z
    (csv_row,) = csv.DictReader(io.StringIO(history.to_csv([result], "http://dash:8501/")))
    assert csv_row["created_at"] == "2026-12-04T18:37:13Z"
    assert (csv_row["host"], csv_row["source"], csv_row["scenario"]) == (
        "db-1", "scenario:memory-leak", "memory-leak",
    )  # fmt: skip
    assert csv_row["link"] == "http://dash:8501/?run=abc123"
    (data,) = json.loads(history.to_json([result], "http://dash:8501"))
    assert data["link"] == "http://dash:8501/?run=abc123"
    assert data["created_at_iso"] == "2026-12-04T18:37:13Z"
