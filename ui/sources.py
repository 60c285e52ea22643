"""Where the dashboard's snapshot comes from: a scenario, this host, an upload, Prometheus.

`SnapshotSource` is what the sidebar chose; pages read a fresh snapshot from it on every
run. Uploads are validated here (size, then every field) before they are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.sources import snapshot as snapshots
from engine.sources.prometheus import PromReading
from ui import prometheus as prom_ui
from ui import safe

MAX_UPLOAD_BYTES = 1 * 2**20  # a snapshot is a few hundred bytes; anything huge is a mistake
DEFAULT_SCENARIO = "cpu-saturation"

SourceKind = Literal["scenario", "live", "upload", "prometheus"]
SOURCE_LABELS: dict[SourceKind, str] = {
    "scenario": "Scenario",
    "live": "Live host",
    "upload": "Upload JSON",
    "prometheus": "Prometheus",
}


@dataclass(frozen=True)
class SnapshotSource:
    kind: SourceKind = "scenario"
    scenario: str = DEFAULT_SCENARIO
    upload: snapshots.Snapshot | None = None  # already validated in the sidebar
    upload_name: str | None = None
    rejected: tuple[str, str] | None = None  # (field, message) of a bad upload or server
    prometheus: prom_ui.PromSource | None = None

    @property
    def label(self) -> str:
        if self.kind == "prometheus":
            return self.prometheus.label if self.prometheus else "Prometheus"
        if self.kind == "scenario":
            return f"scenario {self.scenario}"
        if self.kind == "upload":
            return f"uploaded {self.upload_name or 'file'}"
        return "live host"

    def read(self) -> snapshots.Snapshot:
        """A fresh snapshot (the live host is sampled again on every call)."""
        return self.read_detailed()[0]

    def read_detailed(self) -> tuple[snapshots.Snapshot, PromReading | None]:
        """A fresh snapshot and, from Prometheus, the reading behind it (warnings, time)."""
        if self.kind == "prometheus":
            if self.rejected is not None:
                raise snapshots.SnapshotError(*self.rejected)
            if self.prometheus is None:
                raise snapshots.SnapshotError("prometheus", "choose a Prometheus server first")
            reading = self.prometheus.read()
            return reading.snapshot, reading
        return self._read(), None

    def _read(self) -> snapshots.Snapshot:
        if self.kind == "live":
            return snapshots.live()
        if self.kind == "upload":
            if self.rejected is not None:
                raise snapshots.SnapshotError(*self.rejected)
            if self.upload is None:
                raise snapshots.SnapshotError("file", "upload a snapshot JSON file first")
            return self.upload
        return snapshots.scenario(self.scenario)


def parse_upload(data: bytes, name: str) -> snapshots.Snapshot:
    """An uploaded snapshot, validated; SnapshotError names the bad field."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise snapshots.SnapshotError(
            "file", f"too large ({len(data):,} bytes; a snapshot is a small JSON object)"
        )
    return snapshots.parse_json(data, source=f"upload:{safe.clean(name, limit=80)}")


def snapshot_error_message(exc: snapshots.SnapshotError) -> str:
    """Markdown for a rejected snapshot: which field, and what is wrong with it."""
    return f"Field **{safe.md(exc.field)}**: {safe.md(exc.message)}"
