"""D1: server-side time of a cache-hit rerun of the dashboard's Live page.

`streamlit.testing.v1.AppTest` runs `app.py` (whose default page is Live insights) in
this process, without a browser: the first run analyses (a fresh run on the embedded
simulated server), every later `at.run()` is a rerun whose analysis is a cache hit.
Those reruns are timed. The dashboard is someone else's work in progress: if it is
missing or does not run, the row says so instead of failing the benchmark.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.levels import Level
from bench.measure import Row, Target, check, percentile

REPO = Path(__file__).resolve().parent.parent
APP, LIVE = REPO / "app.py", REPO / "pages" / "live.py"
TIME_SCALE = "0.01"  # only the first run's analysis waits for the simulated server


def _row(level: Level) -> Row:
    return Row(
        "D1",
        "dashboard: server-side time of a cache-hit rerun of the Live page (AppTest)",
        "≤ 150 ms",
        {
            "reruns": level.d1_reruns,
            "time_scale": float(TIME_SCALE),
            "how": "AppTest.from_file('app.py'); one run to fill the cache, then timed "
            "at.run() reruns",
        },
    )


def _environment(data_dir: Path) -> None:
    """What the dashboard's own tests set: simulated backend, private data dir."""
    os.environ.update(
        {
            "QUORUM_DATA_DIR": str(data_dir),
            "QUORUM_BACKEND": "simulated",
            "QUORUM_SIM_TIME_SCALE": TIME_SCALE,
            "QUORUM_CONFIG": str(data_dir / "no-roster.toml"),
            "OLLAMA_HOST": "127.0.0.1:9",  # nothing listens there: auto-detect stays quiet
        }
    )
    os.environ.pop("OPENAI_API_KEY", None)


def run(level: Level) -> Row:
    row = _row(level)
    if not (APP.is_file() and LIVE.is_file()):
        row.not_measured = "not measured: dashboard not present (app.py or pages/live.py)"
        return row
    try:
        from streamlit.testing.v1 import AppTest
    except ImportError as exc:
        row.not_measured = f"not measured: streamlit not importable ({exc})"
        return row
    with tempfile.TemporaryDirectory() as tmp:
        _environment(Path(tmp))
        at = AppTest.from_file(str(APP), default_timeout=120)
        started = time.perf_counter()
        at.run()
        first = time.perf_counter() - started
        if at.exception:
            row.not_measured = f"not measured: app.py raised ({at.exception[0].value})"
            return row
        times: list[float] = []
        for _ in range(level.d1_reruns):
            started = time.perf_counter()
            at.run()
            times.append((time.perf_counter() - started) * 1000)
            if at.exception:
                row.not_measured = f"not measured: a rerun raised ({at.exception[0].value})"
                return row
        cached = any("cached" in m.value for m in at.markdown)
    row.checks += [
        check("cache-hit rerun: median", times, "ms", Target("<=", 150.0)),
        check("cache-hit rerun: p90", [percentile(times, 90)], "ms", binding=False),
        check("first run (fresh analysis at time scale 0.01)", [first * 1000], "ms",
              binding=False),
    ]  # fmt: skip
    row.details = {"rerun_ms": [round(t, 1) for t in times], "page_says_cached": cached}
    if not cached:
        row.notes.append("The page did not show a 'cached' badge on the last rerun.")
    return row
