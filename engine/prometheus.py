"""A snapshot from Prometheus: node_exporter series and a service's own metrics, via PromQL.

The pure parts (the queries, reading API answers, choosing the target, building the
snapshot) are apart from the one I/O class, `PrometheusClient` (httpx, every request
bounded, the whole reading bounded by one budget). A field Prometheus cannot answer (no
series, NaN or Inf, a query error, a stopped exporter, stale samples) is None, "unknown",
with one warning line naming the field and the query; never a made-up 0.

Credentials (URL userinfo, a bearer token) go to httpx and nowhere else: every message
names the server by `Endpoint.display`, and `Endpoint.scrub` removes them from any text
that came back from the network.
"""

from __future__ import annotations

import math
import os
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from engine.snapshot import FIELD_BY_NAME, FIELDS, Snapshot, SnapshotError

TOKEN_ENV = "QUORUM_PROMETHEUS_TOKEN"
SECRETS_KEY = "prometheus_token"  # in .streamlit/secrets.toml
DEFAULT_TIMEOUT_S = 5.0  # one HTTP request
DEFAULT_BUDGET_S = 20.0  # the whole reading (targets and every query)
DEFAULT_RATE_WINDOW = "1m"  # at least 4 scrape intervals at the common 15 s
DEFAULT_MOUNTPOINT = "/"  # the filesystem `disk_space_pct` describes, as psutil's live source
DEFAULT_STALE_AFTER_S = 60.0  # node samples older than this are stale, not "now"
SERVICE_FIELDS = ("p95_latency_ms", "p95_baseline_ms", "error_rate_pct", "request_rate_per_s")
# The common conventions: an `http_request_duration_seconds` histogram and an
# `http_requests_total` counter with a `code` label. The baseline is the same quantile
# over a longer window. No 5xx series yet means 0 errors, but no requests at all means
# the rate is unknown (the division has nothing to divide by).
DEFAULT_SERVICE_QUERIES: dict[str, str] = {
    "p95_latency_ms": "1000 * histogram_quantile(0.95, "
    "sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "p95_baseline_ms": "1000 * histogram_quantile(0.95, "
    "sum by (le) (rate(http_request_duration_seconds_bucket[1h])))",
    "error_rate_pct": '100 * (sum(rate(http_requests_total{code=~"5.."}[5m])) or vector(0)) '
    "/ sum(rate(http_requests_total[5m]))",
    "request_rate_per_s": "sum(rate(http_requests_total[5m]))",
}
_NODE_METRIC = "node_cpu_seconds_total"  # every node_exporter has it: it marks node targets
_SLACK = 0.05  # rates may overshoot a bound a little (extrapolation); beyond this is wrong
_MAX_TEXT = 300  # any text from the server, in a message


class PrometheusError(SnapshotError):
    """Nothing can be built (unreachable, unknown instance, bad answer): one clear line."""


class QueryError(Exception):
    """Prometheus rejected one query (str() is its own one-line reason)."""


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class PromSettings:
    """The `[prometheus]` table of quorum.toml (every key optional)."""

    url: str = ""
    instance: str = ""
    job: str = ""
    rate_window: str = DEFAULT_RATE_WINDOW
    mountpoint: str = DEFAULT_MOUNTPOINT
    timeout_s: float = DEFAULT_TIMEOUT_S
    budget_s: float = DEFAULT_BUDGET_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    queries: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SERVICE_QUERIES))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "quorum.toml") -> PromSettings:
        """Validate the table; SnapshotError names `prometheus.<key>`."""
        if not isinstance(data, Mapping):
            raise SnapshotError("prometheus", f"{source}: [prometheus] must be a table")
        known = {"url", "instance", "job", "rate_window", "mountpoint", "timeout_s", "budget_s",
                 "stale_after_s", "queries"}  # fmt: skip
        for key in data:
            if key not in known:
                raise SnapshotError(
                    f"prometheus.{key}",
                    f"unknown key in {source} (known: {', '.join(sorted(known))})",
                )
        values: dict[str, Any] = {}
        for key in ("url", "instance", "job", "rate_window", "mountpoint"):
            if key in data:
                if not isinstance(data[key], str):
                    raise SnapshotError(f"prometheus.{key}", "must be a string")
                values[key] = data[key].strip()
        if "rate_window" in values and not _is_duration(values["rate_window"]):
            raise SnapshotError("prometheus.rate_window", "must be a PromQL duration such as 1m")
        for key in ("timeout_s", "budget_s", "stale_after_s"):
            if key in data:
                raw = data[key]
                if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
                    raise SnapshotError(f"prometheus.{key}", "must be a number of seconds > 0")
                values[key] = float(raw)
        queries = dict(DEFAULT_SERVICE_QUERIES)
        raw_queries = data.get("queries", {})
        if not isinstance(raw_queries, Mapping):
            raise SnapshotError("prometheus.queries", "must be a table of field = PromQL")
        for name, query in raw_queries.items():
            if name not in SERVICE_FIELDS:
                raise SnapshotError(
                    f"prometheus.queries.{name}",
                    f"not a service field ({', '.join(SERVICE_FIELDS)})",
                )
            if not isinstance(query, str):
                raise SnapshotError(f"prometheus.queries.{name}", "must be a PromQL string")
            queries[name] = query.strip()  # "" turns the field off: always unknown
        return cls(**values, queries=queries)


def load_settings(path: str | Path | None) -> PromSettings:
    """The `[prometheus]` table of a quorum.toml; the defaults when there is no file."""
    if path is None or not Path(path).is_file():
        return PromSettings()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SnapshotError("prometheus", f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SnapshotError("prometheus", f"{path}: invalid TOML ({exc})") from None
    return PromSettings.from_dict(data.get("prometheus", {}), source=str(path))


def _is_duration(text: str) -> bool:
    units = ("ms", "s", "m", "h", "d", "w", "y")
    rest = text
    if not rest:
        return False
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits == 0:
            return False
        rest = rest[digits:]
        unit = next((u for u in units if rest.startswith(u)), None)
        if unit is None:
            return False
        rest = rest[len(unit) :]
    return True


@dataclass(frozen=True)
class Endpoint:
    """Where Prometheus is, with its credentials kept apart from the URL that is shown."""

    url: str  # no userinfo
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, raw: str, token: str | None = None) -> Endpoint:
        """`http(s)://[user:pass@]host[:port][/prefix]`; SnapshotError never repeats the URL."""
        text = raw.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            url = httpx.URL(text)
        except (httpx.InvalidURL, ValueError):
            raise SnapshotError("prometheus", "not a valid URL (http(s)://host:port)") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise SnapshotError("prometheus", "URL must be http(s)://host[:port][/path]")
        bare = url.copy_with(username=None, password=None, query=None, fragment=None)
        return cls(
            url=str(bare).rstrip("/"),
            username=url.username or None,
            password=url.password or None,
            token=token or None,
        )

    @property
    def display(self) -> str:
        return self.url

    @property
    def secrets(self) -> tuple[str, ...]:
        # The user name is not secret (and a short one would mangle every message); it only
        # ever appears inside a URL, and messages use `display`, which has no userinfo.
        return tuple(s for s in (self.password, self.token) if s)

    def scrub(self, text: str) -> str:
        """`text` with every credential replaced: for anything that came off the network."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
            text = text.replace(quote(secret, safe=""), "***")  # as written in a URL
        return " ".join(text.split())[:_MAX_TEXT]


def bearer_token(secrets_file: Path | None = None) -> tuple[str | None, str | None]:
    """(token, where it came from): $QUORUM_PROMETHEUS_TOKEN, else `prometheus_token` in a
    secrets.toml. The token is passed to httpx and nowhere else."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip(), TOKEN_ENV
    if secrets_file is not None and secrets_file.is_file():
        try:
            value = tomllib.loads(secrets_file.read_text(encoding="utf-8")).get(SECRETS_KEY)
        except (OSError, tomllib.TOMLDecodeError):
            return None, None  # an unreadable secrets file means "no token", not a crash
        if isinstance(value, str) and value.strip():
            return value.strip(), "secrets.toml"
    return None, None


# --- PromQL -------------------------------------------------------------------------------


def label_value(text: str) -> str:
    """A PromQL string literal for a label matcher."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(instance: str, job: str = "") -> str:
    """The matchers that pick one node_exporter: `instance="…",job="…"`."""
    out = f"instance={label_value(instance)}"
    return out + (f",job={label_value(job)}" if job else "")


def node_queries(sel: str, window: str, mountpoint: str = DEFAULT_MOUNTPOINT) -> dict[str, str]:
    """The USE fields from node_exporter series for the target `sel` picks.

    Each query aggregates to one number: CPU over all cores, the busiest disk and
    interface, the filesystem at `mountpoint` (used / (used + available), as `df` and
    psutil count it).
    """
    w = window

    def m(extra: str = "") -> str:
        return "{" + (f"{extra},{sel}" if extra else sel) + "}"

    cpu_all = f"sum(rate(node_cpu_seconds_total{m()}[{w}]))"
    idle, iowait = m('mode="idle"'), m('mode="iowait"')
    fs = m(f"mountpoint={label_value(mountpoint)}")
    size, free, avail = (f"max(node_filesystem_{k}_bytes{fs})" for k in ("size", "free", "avail"))
    nic = 'device!="lo"'

    def net_rate(metric: str) -> str:
        return f"rate(node_network_{metric}{m(nic)}[{w}])"

    return {
        "cpu_util_pct": f"100 * (1 - sum(rate(node_cpu_seconds_total{idle}[{w}])) / {cpu_all})",
        "cpu_load_per_core": f"max(node_load1{m()}) / scalar(count(node_cpu_seconds_total{idle}))",
        "cpu_iowait_pct": f"100 * sum(rate(node_cpu_seconds_total{iowait}[{w}])) / {cpu_all}",
        "mem_util_pct": f"100 * (1 - max(node_memory_MemAvailable_bytes{m()}) "
        f"/ max(node_memory_MemTotal_bytes{m()}))",
        # No swap configured is 0 % used, not unknown.
        "mem_swap_pct": f"100 * (max(node_memory_SwapTotal_bytes{m()}) - max(node_memory_SwapFree_bytes{m()})) "
        f"/ clamp_min(max(node_memory_SwapTotal_bytes{m()}), 1)",
        # Since boot, as the live source counts them.
        "mem_oom_kills": f"max(node_vmstat_oom_kill{m()})",
        "disk_util_pct": f"100 * max(rate(node_disk_io_time_seconds_total{m()}[{w}]))",
        # Little's law: weighted io time per second is the mean number of requests in flight.
        "disk_queue_depth": f"max(rate(node_disk_io_time_weighted_seconds_total{m()}[{w}]))",
        "disk_space_pct": f"100 * ({size} - {free}) / ({size} - {free} + {avail})",
        # Interfaces without a known link speed (virtual ones) cannot have a utilisation.
        "net_util_pct": f"100 * max(({net_rate('receive_bytes_total')} + "
        f"{net_rate('transmit_bytes_total')}) / (node_network_speed_bytes{m(nic)} > 0))",
        "net_drops_per_s": f"sum({net_rate('receive_drop_total')}) + sum({net_rate('transmit_drop_total')})",
        "net_errors_per_s": f"sum({net_rate('receive_errs_total')}) + sum({net_rate('transmit_errs_total')})",
    }


def core_count_query(sel: str) -> str:
    return f'count(node_cpu_seconds_total{{mode="idle",{sel}}})'


def freshness_query(sel: str) -> str:
    """Seconds since the newest node sample (server clock); empty once the series are stale."""
    return f"time() - max(timestamp({_NODE_METRIC}{{{sel}}}))"


def hostname_query(sel: str) -> str:
    return f"node_uname_info{{{sel}}}"


NODE_TARGETS_QUERY = f"count by (instance, job) (last_over_time({_NODE_METRIC}[1h]))"


# --- reading API answers (pure) -----------------------------------------------------------


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
    if value < spec.minimum - slack or (spec.maximum is not None and value > spec.maximum + slack):
        bounds = (
            f"{spec.minimum:g}…{spec.maximum:g}"
            if spec.maximum is not None
            else f"≥ {spec.minimum:g}"
        )
        return FieldReading(None, f"value {value:g} is outside {bounds} {spec.unit}")
    clamped = max(spec.minimum, value if spec.maximum is None else min(spec.maximum, value))
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


# --- the reading --------------------------------------------------------------------------


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
        cores = _cores(client, sel) if node_ok else None
        host = _hostname(client, sel) if node_ok else None
    snap = build_snapshot(values, target, cores=cores, host=host)
    return PromReading(snap, target, tuple(warnings), time.time(), asked)


def build_snapshot(
    values: Mapping[str, float | None], target: Target, *, cores: int | None, host: str | None
) -> Snapshot:
    """The snapshot (None = unknown); the instance names it, never the server URL."""
    data: dict[str, Any] = {name: values.get(name) for name in FIELD_BY_NAME}
    data.update(
        host=host or target.instance,
        timestamp=time.time(),
        cpu_count=cores if cores and cores >= 1 else 1,
        source=f"prometheus:{target.instance}",
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
            f"node_exporter {target.instance}: no current {_NODE_METRIC} samples (stale series); "
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


def _cores(client: PrometheusClient, sel: str) -> int | None:
    try:
        samples = client.query(core_count_query(sel))
    except QueryError:
        return None
    return int(samples[0].value) if samples and math.isfinite(samples[0].value) else None


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
