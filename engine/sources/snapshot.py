"""A host's metrics in USE-method terms (utilisation, saturation, errors), and where they come from.

Sources: the live host (psutil, two samples for rates), a JSON file, or a bundled named
scenario for demos. Every value is validated with a field-level message, and
`cache_key` names the analysis a snapshot would get: two snapshots that quantise to
the same values share a key (the timestamp and host name are not part of it).
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from engine import sanitize

Resource = Literal["cpu", "memory", "disk", "network", "service"]
Kind = Literal["utilization", "saturation", "errors", "service"]


# A snapshot is a few hundred bytes; a file past this is a mistake, and is not read further.
MAX_SNAPSHOT_BYTES = 1 * 2**20
_MAX_TIMESTAMP = 1e11  # year ~5138: past it, the number is not unix seconds
MAX_CPU_COUNT = 1 << 20
# The largest value any field takes, with or without a maximum of its own: beyond every
# real measurement, and far enough below float's range (≈ 1.8e308) that quantising,
# deltas and rates never overflow (1e308 / 0.1 is inf), and below 2**53, so a count
# stays a whole number.
MAX_VALUE = 1e15


class SnapshotError(ValueError):
    """A snapshot field is missing or wrong. `field` names it; str() is one readable line."""

    def __init__(self, field: str, message: str) -> None:
        # Field names can come from the file itself (unknown keys): keep them one short line.
        field, message = _one_line(field, 60), _one_line(message, 300)
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _one_line(text: str, limit: int) -> str:
    """Control characters escaped (a newline would break the one-line message), capped."""
    flat = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[: limit * 4])
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    resource: Resource
    kind: Kind
    unit: str
    label: str
    minimum: float
    maximum: float | None
    quantum: float  # step values are rounded to for the cache key and the prompts
    required: bool = True

    @property
    def upper(self) -> float:
        """The largest value accepted: the field's maximum, else MAX_VALUE."""
        return MAX_VALUE if self.maximum is None else self.maximum


# The analysis-relevant fields. Order is display order.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("cpu_util_pct", "cpu", "utilization", "%", "CPU utilisation", 0, 100, 1),
    FieldSpec("cpu_load_per_core", "cpu", "saturation", "×", "Run queue per core", 0, None, 0.1),
    FieldSpec("cpu_iowait_pct", "cpu", "errors", "%", "CPU iowait", 0, 100, 1),
    FieldSpec("mem_util_pct", "memory", "utilization", "%", "Memory utilisation", 0, 100, 1),
    FieldSpec("mem_swap_pct", "memory", "saturation", "%", "Swap used", 0, 100, 1),
    FieldSpec("mem_oom_kills", "memory", "errors", "count", "OOM kills", 0, None, 1),
    FieldSpec("disk_util_pct", "disk", "utilization", "%", "Disk busy", 0, 100, 1),
    FieldSpec("disk_queue_depth", "disk", "saturation", "reqs", "Disk queue depth", 0, None, 0.1),
    FieldSpec("disk_space_pct", "disk", "errors", "%", "Disk space used", 0, 100, 1),
    FieldSpec("net_util_pct", "network", "utilization", "%", "Network utilisation", 0, 100, 1),
    FieldSpec("net_drops_per_s", "network", "saturation", "/s", "Packet drops", 0, None, 1),
    FieldSpec("net_errors_per_s", "network", "errors", "/s", "Interface errors", 0, None, 1),
    FieldSpec(
        "p95_latency_ms", "service", "service", "ms", "p95 latency", 0, None, 10, required=False
    ),
    FieldSpec(
        "p95_baseline_ms", "service", "service", "ms", "p95 baseline", 0, None, 10, required=False
    ),
    FieldSpec(
        "error_rate_pct", "service", "service", "%", "Error rate", 0, 100, 0.1, required=False
    ),
    FieldSpec(
        "request_rate_per_s",
        "service",
        "service",
        "/s",
        "Request rate",
        0,
        None,
        10,
        required=False,
    ),
)
FIELD_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
_META_FIELDS = ("host", "timestamp", "cpu_count", "source")


@dataclass(frozen=True)
class Snapshot:
    host: str
    timestamp: float
    cpu_count: int
    source: str  # "live", "file:<name>", "scenario:<name>", "prometheus:<instance>"
    # None = "unknown": only a source that may lack data (Prometheus) builds one with None.
    cpu_util_pct: float | None
    cpu_load_per_core: float | None
    cpu_iowait_pct: float | None
    mem_util_pct: float | None
    mem_swap_pct: float | None
    mem_oom_kills: float | None
    disk_util_pct: float | None
    disk_queue_depth: float | None
    disk_space_pct: float | None
    net_util_pct: float | None
    net_drops_per_s: float | None
    net_errors_per_s: float | None
    p95_latency_ms: float | None = None
    p95_baseline_ms: float | None = None
    error_rate_pct: float | None = None
    request_rate_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "file", allow_unknown: bool = False) -> Snapshot:
        """Validate `data` (parsed JSON) and build a snapshot; SnapshotError names the bad field.

        `allow_unknown`: a source that cannot answer every field (Prometheus) passes None
        for "unknown"; files and the live host must give every required field.
        """
        if not isinstance(data, Mapping):
            raise SnapshotError("snapshot", f"must be a JSON object, got {type(data).__name__}")
        known = set(FIELD_BY_NAME) | set(_META_FIELDS)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SnapshotError(
                unknown[0], f"unknown field (known fields: {', '.join(FIELD_BY_NAME)})"
            )
        values: dict[str, Any] = {}
        for spec in FIELDS:
            values[spec.name] = _validate_value(spec, data.get(spec.name), allow_unknown)
        host = data.get("host", "unknown")
        if not isinstance(host, str) or not host.strip() or len(host) > 253:
            raise SnapshotError("host", "must be a non-empty string of at most 253 characters")
        if not host.isprintable():  # controls, escapes, invisible formatting, lone surrogates
            raise SnapshotError("host", "must not contain control characters or invalid Unicode")
        timestamp = data.get("timestamp", time.time())
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise SnapshotError("timestamp", "must be unix seconds (a number)")
        if not 0 <= timestamp <= _MAX_TIMESTAMP:  # False for NaN too
            raise SnapshotError(
                "timestamp", f"must be unix seconds between 0 and {_MAX_TIMESTAMP:g}"
            )
        cpu_count = data.get("cpu_count", 1)
        if isinstance(cpu_count, bool) or not isinstance(cpu_count, int) or cpu_count < 1:
            raise SnapshotError("cpu_count", "must be a whole number ≥ 1")
        if cpu_count > MAX_CPU_COUNT:
            raise SnapshotError("cpu_count", f"must be at most {MAX_CPU_COUNT}")
        src = data.get("source", source)
        if not isinstance(src, str) or len(src) > 200 or not src.isprintable():
            raise SnapshotError("source", "must be a printable string of at most 200 characters")
        # A file's text that is not printable is rejected above (bad input, one line); what
        # is accepted still passes the one sanitiser (`engine/sanitize.py`) on its way in.
        return cls(
            host=sanitize.line(host, limit=253),
            timestamp=float(timestamp),
            cpu_count=cpu_count,
            source=sanitize.line(src, limit=200),
            **values,
        )

    def metric(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)

    def quantised(self, quanta: Mapping[str, float] | None = None) -> dict[str, float | None]:
        """The analysis-relevant values rounded to their quantum (overridable per field)."""
        out: dict[str, float | None] = {}
        for spec in FIELDS:
            value = getattr(self, spec.name)
            q = (quanta or {}).get(spec.name, spec.quantum)
            out[spec.name] = None if value is None else quantise(value, q)
        return out

    def cache_key(self, quanta: Mapping[str, float] | None = None) -> str:
        canonical = json.dumps(self.quantised(quanta), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def quantise(value: float, quantum: float) -> float:
    if quantum <= 0:
        return float(value)
    steps = math.floor(value / quantum + 0.5)  # half-up, not banker's rounding
    # Round again so 0.1-steps print as 0.3, not 0.30000000000000004.
    return round(steps * quantum, 6)


def _validate_value(spec: FieldSpec, raw: Any, allow_unknown: bool = False) -> float | None:
    if raw is None:
        if spec.required and not allow_unknown:
            raise SnapshotError(spec.name, f"is required ({spec.label}, {spec.unit})")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise SnapshotError(spec.name, f"must be a number ({spec.unit}), got {_preview(raw)}")
    try:
        value = float(raw)
    except OverflowError:  # an integer with hundreds of digits
        value = math.inf
    if not math.isfinite(value):
        raise SnapshotError(spec.name, "must be a finite number")
    if value < spec.minimum:
        raise SnapshotError(spec.name, f"must be ≥ {spec.minimum:g}, got {value:g}")
    if value > spec.upper:
        raise SnapshotError(spec.name, f"must be ≤ {spec.upper:g}, got {value:g}")
    return value


def _preview(raw: Any) -> str:
    """What was given instead of a number, short: a huge or nested value is not echoed whole."""
    if isinstance(raw, str):
        return repr(raw[:40]) + ("…" if len(raw) > 40 else "")
    if isinstance(raw, list | dict):
        return f"a JSON {'array' if isinstance(raw, list) else 'object'}"
    return repr(raw)[:40]


def load_file(path: str | Path) -> Snapshot:
    """Read and validate a snapshot file; reads at most MAX_SNAPSHOT_BYTES + 1 bytes."""
    p = Path(path)
    try:
        with p.open("rb") as handle:
            data = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except OSError as exc:
        raise SnapshotError("file", f"cannot read {p}: {exc.strerror or exc}") from None
    return parse_json(data, source=f"file:{p.name}")


def parse_json(text: str | bytes, *, source: str = "upload") -> Snapshot:
    """Validate one snapshot JSON document; every way it can be wrong is a SnapshotError."""
    if isinstance(text, bytes):
        if len(text) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(
                "file",
                f"larger than {MAX_SNAPSHOT_BYTES // 1024} KiB (a snapshot is a small JSON object)",
            )
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SnapshotError(
                "file", f"not UTF-8 text (a binary file?): bad byte at offset {exc.start}"
            ) from None
    elif len(text) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError("file", f"larger than {MAX_SNAPSHOT_BYTES // 1024} KiB")
    if not text.strip():
        raise SnapshotError("file", "is empty (expected a JSON object with the snapshot fields)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(
            "file", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise SnapshotError(
            "file", "nested too deeply (a snapshot is one flat JSON object)"
        ) from None
    except ValueError:  # the one other way: an integer longer than Python converts
        raise SnapshotError("file", "a number in it has too many digits (more than 4300)") from None
    return Snapshot.from_dict(data, source=source)


# Bundled demo scenarios: plausible hosts, each showing one USE-method story.
_HEALTHY: dict[str, float] = {
    "cpu_util_pct": 23, "cpu_load_per_core": 0.3, "cpu_iowait_pct": 1,
    "mem_util_pct": 48, "mem_swap_pct": 0, "mem_oom_kills": 0,
    "disk_util_pct": 12, "disk_queue_depth": 0.2, "disk_space_pct": 41,
    "net_util_pct": 9, "net_drops_per_s": 0, "net_errors_per_s": 0,
    "p95_latency_ms": 180, "p95_baseline_ms": 170, "error_rate_pct": 0.1,
    "request_rate_per_s": 420,
}  # fmt: skip
SCENARIOS: dict[str, dict[str, float]] = {
    "healthy": _HEALTHY,
    "cpu-saturation": {
        **_HEALTHY, "cpu_util_pct": 98, "cpu_load_per_core": 3.4, "cpu_iowait_pct": 2,
        "p95_latency_ms": 1450, "error_rate_pct": 0.8, "request_rate_per_s": 910,
    },
    "memory-leak": {
        **_HEALTHY, "mem_util_pct": 96, "mem_swap_pct": 71, "mem_oom_kills": 3,
        "cpu_util_pct": 61, "p95_latency_ms": 620, "error_rate_pct": 1.6,
    },
    "disk-io-bound": {
        **_HEALTHY, "disk_util_pct": 99, "disk_queue_depth": 14.5, "disk_space_pct": 93,
        "cpu_iowait_pct": 38, "p95_latency_ms": 980,
    },
    "error-spike": {
        **_HEALTHY, "error_rate_pct": 12.5, "net_errors_per_s": 40, "net_drops_per_s": 350,
        "request_rate_per_s": 2600, "p95_latency_ms": 760, "net_util_pct": 71,
    },
}  # fmt: skip


def scenario(name: str) -> Snapshot:
    if name not in SCENARIOS:
        raise SnapshotError(
            "scenario", f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        )
    data: dict[str, Any] = {**SCENARIOS[name], "host": f"demo-{name}", "cpu_count": 8}
    return Snapshot.from_dict(data, source=f"scenario:{name}")


def live(interval_s: float = 0.5) -> Snapshot:
    """Sample this host twice, `interval_s` apart, for rates and busy fractions."""
    import psutil  # imported here: only the live source needs it

    disk0 = psutil.disk_io_counters()
    net0 = psutil.net_io_counters()
    psutil.cpu_times_percent(interval=None)
    t0 = time.monotonic()
    time.sleep(interval_s)  # the sampling window itself, not a wait for a result
    cpu_times = psutil.cpu_times_percent(interval=None)
    elapsed = max(time.monotonic() - t0, 1e-3)
    disk1 = psutil.disk_io_counters()
    net1 = psutil.net_io_counters()

    cores = psutil.cpu_count() or 1
    cpu_util = max(0.0, 100.0 - cpu_times.idle)
    load1 = psutil.getloadavg()[0] / cores
    mem = psutil.virtual_memory()
    swap = psutil.swap_memory()

    disk_util = disk_queue = 0.0
    if disk0 is not None and disk1 is not None:
        busy_ms = getattr(disk1, "busy_time", 0) - getattr(disk0, "busy_time", 0)
        disk_util = min(100.0, busy_ms / (elapsed * 1000) * 100)
        io_ms = (disk1.read_time + disk1.write_time) - (disk0.read_time + disk0.write_time)
        disk_queue = max(0.0, io_ms / (elapsed * 1000))  # Little's law: mean requests in flight
    space = psutil.disk_usage("/").percent

    speeds = [s.speed for s in psutil.net_if_stats().values() if s.isup and s.speed > 0]
    link_bytes_s = max(speeds) * 125_000 if speeds else 0.0
    bytes_s = ((net1.bytes_sent + net1.bytes_recv) - (net0.bytes_sent + net0.bytes_recv)) / elapsed
    drops = ((net1.dropin + net1.dropout) - (net0.dropin + net0.dropout)) / elapsed
    errors = ((net1.errin + net1.errout) - (net0.errin + net0.errout)) / elapsed

    return Snapshot.from_dict(
        {
            "host": socket.gethostname() or "localhost",
            "timestamp": time.time(),
            "cpu_count": cores,
            "cpu_util_pct": round(cpu_util, 2),
            "cpu_load_per_core": round(load1, 3),
            "cpu_iowait_pct": round(getattr(cpu_times, "iowait", 0.0), 2),
            "mem_util_pct": mem.percent,
            "mem_swap_pct": swap.percent,
            "mem_oom_kills": _oom_kills(),
            "disk_util_pct": round(disk_util, 2),
            "disk_queue_depth": round(disk_queue, 3),
            "disk_space_pct": space,
            "net_util_pct": round(min(100.0, bytes_s / link_bytes_s * 100), 2)
            if link_bytes_s
            else 0.0,
            "net_drops_per_s": round(max(0.0, drops), 2),
            "net_errors_per_s": round(max(0.0, errors), 2),
        },
        source="live",
    )


def _oom_kills() -> float:
    """Kernel OOM kills since boot (Linux /proc/vmstat); 0 where the kernel does not say."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0
