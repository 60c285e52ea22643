"""Every analysis, kept on disk as one JSON line each (append-only, flock-guarded).

Lines that cannot be read (a torn write, a hand edit) are skipped with a warning, never
fatal. When the file grows past `max_bytes` it is trimmed to its newest `max_entries`
lines; appending never reads the file (the dashboard appends on every cache hit).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from engine.records import AnalysisResult

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "created_at",
    "snapshot_key",
    "mode",
    "backend",
    "simulated",
    "execution_time_s",
    "critical_path_s",
    "tier",
    "confidence",
    "agents_participated",
    "agents_total",
    "cache_hit",
)


class History:
    def __init__(
        self, path: str | Path, *, max_entries: int = 2000, max_bytes: int = 32 * 2**20
    ) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    @contextmanager
    def _locked(self, mode: str) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, mode, encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def append(self, result: AnalysisResult) -> None:
        """Record a run; a history that cannot be written is logged, never fatal."""
        line = json.dumps(result.to_dict(), separators=(",", ":")) + "\n"
        try:
            with self._locked("a") as fh:
                fh.write(line)
                fh.flush()
                size = os.fstat(fh.fileno()).st_size
            if size > self.max_bytes:
                self._trim()
        except OSError as exc:
            log.warning("history not written (%s): %s", self.path, exc)

    def _trim(self) -> None:
        with self._locked("r+") as fh:
            lines = fh.readlines()[-self.max_entries :]
            fh.seek(0)
            fh.writelines(lines)
            fh.truncate()

    def load(self, limit: int | None = None) -> list[AnalysisResult]:
        """Newest first."""
        if not self.path.exists():
            return []
        with self._locked("r") as fh:
            lines = fh.readlines()
        out: list[AnalysisResult] = []
        for number, line in enumerate(reversed(lines)):
            if limit is not None and len(out) >= limit:
                break
            try:
                out.append(AnalysisResult.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("history line %d skipped: %s", len(lines) - number, exc)
        return out

    def clear(self) -> None:
        with self._locked("w"):
            pass


def to_json(results: list[AnalysisResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)


def row(result: AnalysisResult) -> dict[str, Any]:
    """One flat row per run (the History table and the CSV export)."""
    return {
        "created_at": result.created_at,
        "snapshot_key": result.snapshot_key,
        "mode": result.mode,
        "backend": result.backend.kind,
        "simulated": result.backend.simulated,
        "execution_time_s": round(result.execution_time_s, 4),
        "critical_path_s": round(result.critical_path_s, 4),
        "tier": result.tier,
        "confidence": result.confidence,
        "agents_participated": result.agents_participated,
        "agents_total": result.agents_total,
        "cache_hit": result.cache.hit,
    }


def to_csv(results: list[AnalysisResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for result in results:
        writer.writerow(row(result))
    return buffer.getvalue()
