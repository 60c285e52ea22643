"""`python -m bench --smoke` end to end: every row runs and reports in the JSON contract.

The benchmark reports targets; it never asserts them, and neither does this test: it
checks the shape of the results (every row present, a measured value, a target, a
boolean `met`), not whether the machine running the suite is fast enough.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.rows import ROWS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    docs = {p: p.read_bytes() for p in (REPO / "docs").glob("performance.*")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--no-docs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # --no-docs: the committed report is left alone.
    assert {p: p.read_bytes() for p in (REPO / "docs").glob("performance.*")} == docs
    data: dict[str, Any] = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    return data


def test_every_row_is_present_in_order(results: dict[str, Any]) -> None:
    assert [row["id"] for row in results["rows"]] == list(ROWS)
    assert results["level"] == "smoke" and results["smoke"] is True
    command = results["command"]
    assert command.startswith("python -m bench --smoke --out ") and command.endswith("--no-docs")
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["python"]


def test_every_row_has_a_measured_value_a_target_and_a_boolean_met(
    results: dict[str, Any],
) -> None:
    for row in results["rows"]:
        assert isinstance(row["met"], bool), row["id"]
        assert isinstance(row["target"], str) and row["target"], row["id"]
        assert not row.get("crashed"), row["not_measured"]
        if row["not_measured"] is not None:
            # Rows that need a part the machine may lack (the dashboard, redis-server: R1, A1), or
            # minutes of real inference (R2, never at the smoke level), may be absent.
            assert row["id"] in ("D1", "R1", "R2", "A1"), row["id"]
            assert row["not_measured"].startswith("not measured")
            assert row["met"] is False
            continue
        assert isinstance(row["measured"], int | float), row["id"]
        assert row["checks"], row["id"]
        for check in row["checks"]:
            stats = check["stats"]
            assert stats["min"] <= stats["median"] <= stats["max"], (row["id"], check["name"])
            assert check["met"] is None or isinstance(check["met"], bool)
            if check["binding"]:
                assert check["target"] and isinstance(check["met"], bool)
        binding = [c["met"] for c in row["checks"] if c["binding"]]
        assert binding and row["met"] == all(binding), row["id"]


def test_report_and_chart_render_from_the_results(results: dict[str, Any]) -> None:
    from bench import chart, report

    page = report.render(results, chart_name="performance.svg")
    for row in results["rows"]:
        assert f"| {row['id']} |" in page
    assert "Smoke level" in page and "70 s → 15 s" in page
    svg = chart.render(results)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
