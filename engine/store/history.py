"""Every analysis, kept on disk as one JSON line each (append-only, lock-guarded).

Appends are atomic: each line goes out in one `write` on an `O_APPEND` descriptor while
holding an `flock` on a lock file beside the history, so two processes appending at once
never interleave a line. Lines that cannot be read (a torn write, a hand edit) are
skipped with a warning, never fatal. When the file grows past `max_bytes` it is trimmed
to its newest `max_entries` lines by writing a new file and renaming it over the old
one, so a failure mid-trim (disk full) leaves the old history whole. A history that
cannot be written (unwritable or full directory) logs one warning and the run goes on.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.records import AnalysisResult

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "created_at",
    "run_id",
    "host",
    "source",
    "scenario",
    "snapshot_key",
    "mode",
    "backend",
    "simulated",
    "time_scale",
    "execution_time_s",
    "critical_path_s",
    "tier",
    "confidence",
    "agents_participated",
    "agents_total",
    "cache_hit",
    "link",
)


class History:
    def __init__(
        self, path: str | Path, *, max_entries: int = 2000, max_bytes: int = 32 * 2**20
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.degraded: str | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def _locked(self, exclusive: bool = True) -> Iterator[None]:
        """The history's lock (a separate file: the history itself is replaced on trim)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _failed(self, what: str, exc: OSError) -> None:
        if self.degraded is None:
            log.warning("history %s (%s): %s; runs go on unrecorded", what, self.path, exc)
        self.degraded = f"cannot {what}: {exc.strerror or exc}"

    def append(self, result: AnalysisResult) -> None:
        """Record a run; a history that cannot be written is logged once, never fatal."""
        data = (json.dumps(result.to_dict(), separators=(",", ":")) + "\n").encode()
        try:
            with self._locked():
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    size = os.fstat(fd).st_size
                    written = os.write(fd, data)
                    if written != len(data):  # a short write: disk full; undo the torn part
                        os.ftruncate(fd, size)
                        raise OSError(28, "No space left on device (short write)")
                finally:
                    os.close(fd)
                if size + written > self.max_bytes:
                    self._trim()
        except OSError as exc:
            self._failed("not written", exc)
            return
        self.degraded = None

    def _trim(self) -> None:
        """Keep the newest `max_entries` lines (caller holds the lock)."""
        with open(self.path, "rb") as fh:
            lines = fh.readlines()[-self.max_entries :]
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.writelines(lines)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self, limit: int | None = None) -> list[AnalysisResult]:
        """Newest first."""
        if not self.path.exists():
            return []
        try:
            try:
                with self._locked(exclusive=False):
                    lines = self.path.read_bytes().splitlines()
            except PermissionError:  # a read-only directory: read without the lock
                lines = self.path.read_bytes().splitlines()
        except OSError as exc:
            self._failed("not readable", exc)
            return []
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
        try:
            with self._locked():
                os.truncate(self.path, 0)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._failed("not cleared", exc)


def iso_time(created_at: float) -> str:
    """Unix seconds as ISO 8601 in UTC (`2026-12-04T18:37:13Z`), what a spreadsheet reads."""
    stamp = datetime.fromtimestamp(created_at, tz=UTC).isoformat(timespec="seconds")
    return stamp.replace("+00:00", "Z")


def scenario_of(result: AnalysisResult) -> str:
    """The scenario's name when the snapshot came from one, else ""."""
    kind, _, name = result.source.partition(":")
    return name if kind == "scenario" else ""


def run_link(result: AnalysisResult, dashboard_url: str | None) -> str:
    """`<dashboard>/?run=<id>`: where the dashboard opens this run ("" without either)."""
    if not dashboard_url or not result.run_id:
        return ""
    return f"{dashboard_url.rstrip('/')}/?run={result.run_id}"


def to_json(results: list[AnalysisResult], dashboard_url: str | None = None) -> str:
    """The runs in the JSON contract, each with its ISO time and (given the dashboard's
    URL) its link."""
    out = [
        {
            **r.to_dict(),
            "created_at_iso": iso_time(r.created_at),
            "link": run_link(r, dashboard_url),
        }
        for r in results
    ]
    return json.dumps(out, indent=2)


def row(result: AnalysisResult, dashboard_url: str | None = None) -> dict[str, Any]:
    """One flat row per run (the History table and the CSV export)."""
    return {
        "created_at": iso_time(result.created_at),
        "run_id": result.run_id,
        "host": result.host,
        "source": result.source,
        "scenario": scenario_of(result),
        "snapshot_key": result.snapshot_key,
        "mode": result.mode,
        "backend": result.backend.kind,
        "simulated": result.backend.simulated,
        "time_scale": result.simulated_time_scale,
        "execution_time_s": round(result.execution_time_s, 4),
        "critical_path_s": round(result.critical_path_s, 4),
        "tier": result.tier,
        "confidence": result.confidence,
        "agents_participated": result.agents_participated,
        "agents_total": result.agents_total,
        "cache_hit": result.cache.hit,
        "link": run_link(result, dashboard_url),
    }


def to_csv(results: list[AnalysisResult], dashboard_url: str | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for result in results:
        writer.writerow(row(result, dashboard_url))
    return buffer.getvalue()
