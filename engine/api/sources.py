"""Where a request's snapshot comes from: a bundled scenario, this host, or Prometheus.

The server's own default (what `serve` was started with: `--scenario`, `--snapshot`,
`--prometheus` or `--live`) applies when a request names no source. Every failure is a
`SourceError` with the CLI's one-line, field-level message and the HTTP status to send.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from engine.sources import prometheus
from engine.sources import snapshot as snapshots

SourceKind = Literal["scenario", "file", "live", "prometheus"]
SOURCES = ("live", "prometheus")  # what `?source=` accepts (a scenario has `?scenario=`)
# Without a cache, how long requests share one sample of this host (see LiveSampler).
LIVE_MAX_AGE_S = 10.0


class SourceError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SnapshotSource:
    kind: SourceKind = "live"
    name: str = ""  # the scenario or file
    instance: str = ""
    job: str = ""


@dataclass(frozen=True)
class PrometheusAccess:
    url: str | None = field(default=None, repr=False)  # may carry userinfo: never shown
    token: str | None = field(default=None, repr=False)
    config: str = "quorum.toml"  # [prometheus] queries and windows


def choose(
    default: SnapshotSource, scenario: str | None, source: str | None, instance: str, job: str
) -> SnapshotSource:
    """The request's source: its own parameters, else the server's default."""
    if scenario and source:
        raise SourceError(422, "scenario: give either scenario or source, not both")
    if scenario:
        return SnapshotSource("scenario", scenario)
    if source is not None and source not in SOURCES:
        raise SourceError(422, f"source: must be one of {', '.join(SOURCES)}, got {source!r}")
    if (instance or job) and source != "prometheus" and default.kind != "prometheus":
        raise SourceError(422, "instance: instance and job need source=prometheus")
    if source == "live":
        return SnapshotSource("live")
    if source == "prometheus" or default.kind == "prometheus":
        return SnapshotSource(
            "prometheus", instance=instance or default.instance, job=job or default.job
        )
    return default


def load(
    source: SnapshotSource,
    access: PrometheusAccess,
    live: LiveSampler,
    *,
    fresh: bool = False,
) -> snapshots.Snapshot:
    """Read the snapshot (blocking: a live sample takes half a second, Prometheus a few
    queries); `fresh`: sample this host again. SourceError says why not."""
    try:
        if source.kind == "scenario":
            return snapshots.scenario(source.name)
        if source.kind == "file":
            return snapshots.load_file(source.name)
        if source.kind == "prometheus":
            return read_prometheus(access, source.instance, source.job)
        return live.latest(fresh=fresh)
    except snapshots.SnapshotError as exc:
        raise SourceError(422, f"snapshot {exc}") from None
    except prometheus.PrometheusError as exc:
        message = str(exc) if exc.field == "prometheus" else f"prometheus {exc}"
        raise SourceError(502, message) from None


def read_prometheus(access: PrometheusAccess, instance: str, job: str) -> snapshots.Snapshot:
    if not access.url:
        raise SourceError(422, "source: prometheus needs the server started with --prometheus URL")
    settings = prometheus.load_settings(access.config)
    endpoint = prometheus.Endpoint.parse(access.url, token=access.token)
    return prometheus.read_snapshot(endpoint, settings, instance=instance, job=job).snapshot


class LiveSampler:
    """This host's snapshot, sampled at most once per `max_age_s` (one sampler at a time).

    Two samples of a host a few seconds apart rarely quantise to the same cache key, so
    a live request would never hit the cache; and a sample takes half a second (CPU
    utilisation over an interval). Requests within `max_age_s` (the server sets the
    cache TTL) share one sample: a repeat of `curl /api/insights/autogen` (docs/api.md)
    is then a cache hit in milliseconds. `refresh=true` takes a new sample."""

    def __init__(self, max_age_s: float = LIVE_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._last: tuple[float, snapshots.Snapshot] | None = None

    def latest(self, *, fresh: bool = False) -> snapshots.Snapshot:
        with self._lock:
            now = time.monotonic()
            if fresh or self._last is None or now - self._last[0] >= self.max_age_s:
                self._last = (now, snapshots.live())
            return self._last[1]
