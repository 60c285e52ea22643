"""A snapshot from Prometheus: node_exporter series and a service's own metrics, via PromQL.

This module is the I/O: `PrometheusClient` (httpx, every request bounded, the whole
reading bounded by one budget) and `read_snapshot`. The pure parts live beside it:
engine/sources/prometheus/queries.py (the PromQL), engine/sources/prometheus/answers.py (reading API answers,
choosing the target), engine/sources/prometheus/config.py (quorum.toml, the endpoint, credentials).
A field Prometheus cannot answer (no series, NaN or Inf, a query error, a stopped
exporter, stale samples) is None, "unknown", with one warning line naming the field and
the query; never a made-up 0.

Credentials (URL userinfo, a bearer token) go to httpx and nowhere else: every message
names the server by `Endpoint.display`, and `Endpoint.scrub` removes them from any text
that came back from the network.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from engine import sanitize
from engine.sources.prometheus.answers import (
    FieldReading,
    PrometheusError,
    QueryError,
    Sample,
    Target,
    api_data,
    choose_target,
    field_value,
    parse_samples,
    parse_targets,
)
from engine.sources.prometheus.config import (
    DEFAULT_BUDGET_S,
    DEFAULT_TIMEOUT_S,
    SECRETS_KEY,
    TOKEN_ENV,
    Endpoint,
    PromSettings,
    bearer_token,
    load_settings,
)
from engine.sources.prometheus.queries import (
    DEFAULT_SERVICE_QUERIES,
    NODE_METRIC,
    NODE_TARGETS_QUERY,
    SERVICE_FIELDS,
    core_count_query,
    freshness_query,
    hostname_query,
    node_queries,
    selector,
)
from engine.sources.snapshot import FIELD_BY_NAME, FIELDS, MAX_CPU_COUNT, Snapshot

# One import for callers (CLI, dashboard, tests): the parts live in engine/prom_*.py.
__all__ = [
    "DEFAULT_SERVICE_QUERIES", "DEFAULT_TIMEOUT_S", "NODE_TARGETS_QUERY", "SECRETS_KEY",
    "TOKEN_ENV", "Endpoint", "FieldReading", "PromReading", "PromSettings", "PrometheusClient",
    "PrometheusError", "QueryError", "Sample", "Target", "bearer_token", "build_snapshot",
    "choose_target", "field_value", "iter_warnings", "load_settings", "node_queries",
    "parse_samples", "parse_targets", "read_snapshot", "selector",
]  # fmt: skip


@dataclass(frozen=True)
class PromReading:
    """A snapshot from Prometheus and what could not be read (one line per problem)."""

    snapshot: Snapshot
    target: Target
    warnings: tuple[str, ...]
    fetched_at: float  # unix seconds
    queries: Mapping[str, str]  # field -> the PromQL that answered it (or tried to)

    @property
    def unknown(self) -> list[str]:
        return [f.name for f in FIELDS if self.snapshot.metric(f.name) is None]


class PrometheusClient:
    """Prometheus' HTTP API over httpx: every request within `timeout_s` and a shared budget."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        budget_s: float = DEFAULT_BUDGET_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._deadline = time.monotonic() + budget_s
        self._budget_s = budget_s
        # A bearer token wins over URL userinfo: one Authorization header, chosen on purpose.
        auth = (
            httpx.BasicAuth(endpoint.username or "", endpoint.password or "")
            if (endpoint.username or endpoint.password) and not endpoint.token
            else None
        )
        headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
        self._http = httpx.Client(
            base_url=endpoint.url,
            auth=auth,
            headers=headers,
            timeout=timeout_s,
            follow_redirects=False,  # a redirect could carry the credentials elsewhere
            transport=transport,
        )

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str) -> list[Sample]:
        """An instant query; QueryError when Prometheus rejects it, PrometheusError when the
        server cannot be asked at all."""
        return parse_samples(self._get("/api/v1/query", {"query": promql}))

    def targets(self) -> list[Target]:
        payload = self._get("/api/v1/targets", {"state": "active"})
        try:
            nodes = {(s.labels.get("instance", ""), s.labels.get("job", ""))
                     for s in self.query(NODE_TARGETS_QUERY)}  # fmt: skip
        except QueryError:
            nodes = set()
        return parse_targets(payload, nodes)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        where = self.endpoint.display
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise PrometheusError(
                "prometheus", f"{where}: no complete answer within {self._budget_s:g} s"
            )
        timeout = min(self.timeout_s, remaining)
        try:
            response = self._http.get(path, params=params, timeout=timeout)
        except httpx.TimeoutException:
            raise PrometheusError(
                "prometheus", f"{where}: no answer within {timeout:.1f} s"
            ) from None
        except httpx.TransportError as exc:
            reason = self.endpoint.scrub(str(exc)) or type(exc).__name__
            raise PrometheusError("prometheus", f"cannot reach {where} ({reason})") from None
        if response.status_code in (401, 403):
            raise PrometheusError(
                "prometheus",
                f"{where}: HTTP {response.status_code}, check the credentials "
                f"(URL user:password or ${TOKEN_ENV})",
            )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code in (400, 422) and isinstance(payload, Mapping):
            api_data(payload)  # raises QueryError with Prometheus' reason
        if response.status_code != 200 or not isinstance(payload, Mapping):
            body = self.endpoint.scrub(response.text[:200]) or "empty body"
            raise PrometheusError(
                "prometheus",
                f"{where}{path}: HTTP {response.status_code}, not a Prometheus API answer ({body})",
            )
        return payload


def read_snapshot(
    endpoint: Endpoint,
    settings: PromSettings,
    *,
    instance: str = "",
    job: str = "",
    transport: httpx.BaseTransport | None = None,
) -> PromReading:
    """Read one snapshot. PrometheusError when nothing can be built; unknown fields warn."""
    instance = instance or settings.instance
    job = job or settings.job
    with PrometheusClient(
        endpoint, timeout_s=settings.timeout_s, budget_s=settings.budget_s, transport=transport
    ) as client:
        try:
            target = choose_target(client.targets(), instance, job)
        except QueryError as exc:
            raise PrometheusError(
                "prometheus", f"{endpoint.display}: {endpoint.scrub(str(exc))}"
            ) from None
        sel = selector(target.instance, target.job)
        warnings: list[str] = []
        node_ok = _node_is_fresh(client, target, sel, settings.stale_after_s, warnings)
        node = node_queries(sel, settings.rate_window, settings.mountpoint)
        asked: dict[str, str] = {**node, **{k: settings.queries.get(k, "") for k in SERVICE_FIELDS}}
        values: dict[str, float | None] = {}
        for name, promql in asked.items():
            if name in node and not node_ok:
                values[name] = None
                continue
            if not promql:
                values[name] = None  # turned off in quorum.toml
                continue
            reading = _ask(client, name, promql)
            values[name] = reading.value
            if reading.problem:
                warnings.append(f"{name}: unknown, {reading.problem}; query: {promql}")
        cores = _cores(client, sel, warnings) if node_ok else None
        host = _hostname(client, sel) if node_ok else None
    snap = build_snapshot(values, target, cores=cores, host=host)
    return PromReading(snap, target, tuple(warnings), time.time(), asked)


def build_snapshot(
    values: Mapping[str, float | None], target: Target, *, cores: int | None, host: str | None
) -> Snapshot:
    """The snapshot (None = unknown); the instance names it, never the server URL."""
    data: dict[str, Any] = {name: values.get(name) for name in FIELD_BY_NAME}
    # Labels are the server's text: made safe where they enter (`engine/sanitize.py`).
    instance = sanitize.line(target.instance, limit=180) or "?"
    data.update(
        host=sanitize.line(host or instance, limit=253) or instance,
        timestamp=time.time(),
        cpu_count=cores if cores and 1 <= cores <= MAX_CPU_COUNT else 1,
        source=f"prometheus:{instance}",
    )
    return Snapshot.from_dict(data, source=data["source"], allow_unknown=True)


def _ask(client: PrometheusClient, name: str, promql: str) -> FieldReading:
    try:
        return field_value(name, client.query(promql))
    except QueryError as exc:
        return FieldReading(None, f"query error ({client.endpoint.scrub(str(exc))})")


def _node_is_fresh(
    client: PrometheusClient, target: Target, sel: str, stale_after_s: float, warnings: list[str]
) -> bool:
    """Whether the node's series are current; one warning line when they are not."""
    if target.health != "up":
        why = f": {client.endpoint.scrub(target.last_error)}" if target.last_error else ""
        state = "not scraped yet" if target.health == "unknown" else "down"
        warnings.append(
            f"node_exporter {target.instance} ({target.job}) is {state}{why}; "
            "its CPU, memory, disk and network fields are unknown"
        )
        return False
    try:
        samples = client.query(freshness_query(sel))
    except QueryError as exc:
        warnings.append(f"node_exporter {target.instance}: freshness query failed ({exc})")
        return False
    age = samples[0].value if samples else math.nan
    if not math.isfinite(age):
        warnings.append(
            f"node_exporter {target.instance}: no current {NODE_METRIC} samples (stale series); "
            "its CPU, memory, disk and network fields are unknown"
        )
        return False
    if age > stale_after_s:
        warnings.append(
            f"node_exporter {target.instance}: newest sample is {age:.0f} s old (stale after "
            f"{stale_after_s:g} s); its CPU, memory, disk and network fields are unknown"
        )
        return False
    return True


def _cores(client: PrometheusClient, sel: str, warnings: list[str]) -> int | None:
    try:
        samples = client.query(core_count_query(sel))
    except QueryError:
        return None
    if not samples:
        return None
    value = samples[0].value
    if not (math.isfinite(value) and 1 <= value <= MAX_CPU_COUNT):  # NaN, ±Inf, 1e308
        warnings.append(f"cpu_count: unknown, the core count {value:g} is not 1…{MAX_CPU_COUNT}")
        return None
    return int(value)


def _hostname(client: PrometheusClient, sel: str) -> str | None:
    try:
        samples = client.query(hostname_query(sel))
    except QueryError:
        return None
    name = samples[0].labels.get("nodename", "") if samples else ""
    return name[:253] or None


def iter_warnings(reading: PromReading) -> Iterator[str]:
    """The warnings, then one summary line of the unknown fields (for the CLI and the page)."""
    yield from reading.warnings
    if reading.unknown:
        yield f"{len(reading.unknown)} field(s) unknown: {', '.join(reading.unknown)}"
