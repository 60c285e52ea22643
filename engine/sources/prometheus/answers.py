"""Reading Prometheus' HTTP API answers: samples, targets, one field's value (or why it is
unknown), and which target to read. Pure: parsed JSON in, records out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.sources.snapshot import FIELD_BY_NAME, SnapshotError

_SLACK = 0.05  # rates may overshoot a bound a little (extrapolation); beyond this is wrong


class PrometheusError(SnapshotError):
    """Nothing can be built (unreachable, unknown instance, bad answer): one clear line."""


class QueryError(Exception):
    """Prometheus rejected one query (str() is its own one-line reason)."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float  # may be NaN or ±Inf: the caller decides


@dataclass(frozen=True)
class Target:
    """One active scrape target (from /api/v1/targets)."""

    instance: str
    job: str
    health: str  # "up", "down" or "unknown" (not scraped yet)
    last_error: str = ""
    node: bool = False  # node_exporter series seen for it in the last hour

    @property
    def label(self) -> str:
        kind = "node_exporter" if self.node else "other"
        return f"{self.instance} ({self.job}, {kind}, {self.health})"


def api_data(payload: Any) -> Any:
    """`data` of a Prometheus API answer; QueryError with Prometheus' own reason otherwise."""
    if not isinstance(payload, Mapping) or "status" not in payload:
        raise QueryError("the answer is not a Prometheus API response")
    if payload["status"] != "success":
        kind = payload.get("errorType") or "error"
        raise QueryError(f"{kind}: {payload.get('error') or 'no reason given'}")
    return payload.get("data")


def parse_samples(payload: Any) -> list[Sample]:
    """The samples of an instant query (vector or scalar)."""
    data = api_data(payload)
    if not isinstance(data, Mapping):
        raise QueryError("the answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [Sample({}, _sample_value(result))]
    if kind != "vector" or not isinstance(result, list):
        raise QueryError(f"expected an instant vector, got {kind!r} (a range query?)")
    out = []
    for item in result:
        if not isinstance(item, Mapping):
            raise QueryError("malformed sample")
        labels = item.get("metric") or {}
        out.append(
            Sample({str(k): str(v) for k, v in labels.items()}, _sample_value(item.get("value")))
        )
    return out


def _sample_value(pair: Any) -> float:
    if not isinstance(pair, list) or len(pair) != 2:
        raise QueryError("malformed sample value")
    try:
        return float(pair[1])  # "NaN", "+Inf" and "-Inf" parse too
    except (TypeError, ValueError):
        raise QueryError(f"sample value {str(pair[1])[:40]!r} is not a number") from None


@dataclass(frozen=True)
class FieldReading:
    value: float | None
    problem: str | None = None  # why the value is unknown (or was adjusted)


def field_value(name: str, samples: list[Sample]) -> FieldReading:
    """One snapshot field from a query's samples: a number in the field's range, or why not."""
    spec = FIELD_BY_NAME[name]
    if not samples:
        return FieldReading(None, "no data (the query returned no series)")
    if len(samples) > 1:
        return FieldReading(
            None, f"the query returned {len(samples)} series; aggregate it to one (sum, max)"
        )
    value = samples[0].value
    if math.isnan(value):
        return FieldReading(None, "the query returned NaN (no samples to divide, or 0/0)")
    if math.isinf(value):
        return FieldReading(None, f"the query returned {'+' if value > 0 else '-'}Inf")
    span = (spec.maximum or 0.0) - spec.minimum
    slack = max(_SLACK * span, 1e-9) if spec.maximum is not None else 1e-9
    # `upper`: the field's maximum, or the snapshot's MAX_VALUE for a field without one
    # (1e308 is finite, but a snapshot refuses it: its arithmetic overflows).
    if spec.maximum is None and value > spec.upper:
        return FieldReading(
            None, f"value {value:g} is beyond {spec.upper:g} {spec.unit}, the most a field takes"
        )
    if value < spec.minimum - slack or value > spec.upper + slack:
        bounds = (
            f"{spec.minimum:g}…{spec.maximum:g}"
            if spec.maximum is not None
            else f"≥ {spec.minimum:g}"
        )
        return FieldReading(None, f"value {value:g} is outside {bounds} {spec.unit}")
    clamped = max(spec.minimum, min(spec.upper, value))
    return FieldReading(round(clamped, 3))


def parse_targets(payload: Any, node_instances: set[tuple[str, str]] | None = None) -> list[Target]:
    """Active targets, node_exporters first, then by instance."""
    data = api_data(payload)
    active = data.get("activeTargets") if isinstance(data, Mapping) else None
    if not isinstance(active, list):
        raise QueryError("the targets answer has no activeTargets")
    nodes = node_instances or set()
    out = []
    for item in active:
        if not isinstance(item, Mapping):
            continue
        labels = item.get("labels") or {}
        instance, job = str(labels.get("instance", "")), str(labels.get("job", ""))
        if not instance:
            continue
        out.append(
            Target(
                instance=instance,
                job=job,
                health=str(item.get("health") or "unknown"),
                last_error=str(item.get("lastError") or ""),
                node=(instance, job) in nodes,
            )
        )
    return sorted(out, key=lambda t: (not t.node, t.instance, t.job))


def choose_target(targets: list[Target], instance: str = "", job: str = "") -> Target:
    """The node_exporter to read: the one named, or the only one there is."""
    pool = [t for t in targets if not job or t.job == job]
    if job and not pool:
        jobs = sorted({t.job for t in targets})
        raise PrometheusError(
            "job", f"{job!r} has no active target (jobs: {', '.join(jobs) or 'none'})"
        )
    if instance:
        named = [t for t in pool if t.instance == instance]
        if not named:
            known = ", ".join(t.instance for t in pool[:12]) or "none"
            raise PrometheusError(
                "instance", f"{instance!r} is not a target of this Prometheus (targets: {known})"
            )
        if len(named) > 1:
            nodes = [t for t in named if t.node]
            if len(nodes) == 1:
                return nodes[0]
            in_jobs = ", ".join(t.job for t in named)
            raise PrometheusError(
                "instance", f"{instance!r} is in several jobs ({in_jobs}); pass --job"
            )
        return named[0]
    nodes = [t for t in pool if t.node]
    if len(nodes) == 1:
        return nodes[0]
    if not nodes:
        raise PrometheusError(
            "instance", "no node_exporter target (no node_cpu_seconds_total in the last hour)"
        )
    names = ", ".join(t.instance for t in nodes[:12])
    raise PrometheusError(
        "instance", f"several node_exporter targets ({names}); pick one with --instance"
    )
