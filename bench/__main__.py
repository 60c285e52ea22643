"""`python -m bench [--quick | --smoke] [--out DIR] [--no-docs] [--rows P1,P3]`.

Runs every row in its own fresh process (`bench.worker`), one after another (rows never
overlap: they would steal each other's two cores), collects the rows into
`<out>/latest.json` and, unless `--no-docs`, rewrites docs/performance.md and
docs/performance.svg from them. Missed targets are reported, never raised: the exit
status is non-zero only when a row could not be measured because its worker crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import chart, report
from bench.levels import LEVELS
from bench.rows import ROWS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOC, SVG = REPO / "docs" / "performance.md", REPO / "docs" / "performance.svg"
WORKER_TIMEOUT_S = 900


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repeats (< 1 minute)")
    size.add_argument(
        "--smoke", action="store_true", help="minimal repeats and sizes, for the test suite"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not rewrite docs/performance.{md,svg}"
    )
    parser.add_argument("--rows", help=f"comma-separated subset of {','.join(ROWS)}")
    args = parser.parse_args(argv)
    args.ids = list(ROWS) if not args.rows else [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in args.ids if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)} (known: {', '.join(ROWS)})")
    args.level = "smoke" if args.smoke else "quick" if args.quick else "full"
    return args


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and whether engine/ had uncommitted changes on top of it."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "engine_uncommitted": bool(git("status", "--porcelain", "--", "engine")),
    }


def _run_row(row_id: str, level: str, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{row_id}.json"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.worker", row_id, "--level", level, "--out", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
        failure = None if done.returncode == 0 and out.is_file() else _last_line(done.stderr)
    except subprocess.TimeoutExpired:
        failure = f"timed out after {WORKER_TIMEOUT_S} s"
    if failure is not None:
        row: dict[str, Any] = {
            "id": row_id, "what": "(the row's worker failed)", "target": "", "measured": None,
            "unit": None, "met": False, "missed": [], "setup": {}, "checks": [], "details": {},
            "notes": [], "not_measured": f"worker failed: {failure}", "crashed": True,
        }  # fmt: skip
    else:
        row = json.loads(out.read_text(encoding="utf-8"))
    row["process_s"] = round(time.perf_counter() - started, 2)
    row["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return row


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _status(row: dict[str, Any]) -> str:
    if row.get("not_measured"):
        return str(row["not_measured"])
    if row["met"]:
        return "met"
    return "MISSED: " + "; ".join(row["missed"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    command = shlex.join(["python", "-m", "bench", *argv])
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    code = code_version()  # before the rows: the code they import
    rows: list[dict[str, Any]] = []
    print(f"{command}: {args.level} level, rows {', '.join(args.ids)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="quorum-bench-") as scratch:
        for i, row_id in enumerate(args.ids, 1):
            row = _run_row(row_id, args.level, Path(scratch))
            rows.append(row)
            print(f"[{i}/{len(args.ids)}] {row_id} ({row['process_s']:.0f} s): {_status(row)}",
                  flush=True)  # fmt: skip
    results: dict[str, Any] = {
        "schema": 1,
        "command": command,
        "level": args.level,
        "smoke": args.level == "smoke",
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        # Others may commit while the rows run; if so, the figures mix two versions.
        "code": {**code, "changed_during_run": code_version() != code},
        "level_parameters": asdict(LEVELS[args.level]),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "latest.json"
    partial = target.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(target)  # readers never see half a file
    print(f"wrote {target}")
    if not args.no_docs:
        DOC.write_text(report.render(results, chart_name=SVG.name), encoding="utf-8")
        SVG.write_text(chart.render(results), encoding="utf-8")
        print(f"wrote {DOC} and {SVG}")
    print(f"done in {results['duration_s']:.0f} s")
    return 1 if any(r.get("crashed") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
