from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

from engine import history
from engine.agents import DEFAULT_ROSTER
from engine.history import History
from engine.records import AnalysisResult
from engine.runner import RunSettings, run_analysis
from engine.snapshot import scenario
from tests.fakes import FakeBackend


def a_result(name: str = "healthy") -> AnalysisResult:
    return asyncio.run(
        run_analysis(scenario(name), DEFAULT_ROSTER, FakeBackend, RunSettings(), model="m")
    )


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
