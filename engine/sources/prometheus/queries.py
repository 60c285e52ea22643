"""PromQL for the Prometheus source: the USE fields from node_exporter series, and the
default service queries (an `http_request_duration_seconds` histogram and an
`http_requests_total` counter). Strings in, strings out: no I/O."""

from __future__ import annotations

DEFAULT_MOUNTPOINT = "/"  # the filesystem `disk_space_pct` describes, as psutil's live source
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
NODE_METRIC = "node_cpu_seconds_total"  # every node_exporter has it: it marks node targets


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
    return f"time() - max(timestamp({NODE_METRIC}{{{sel}}}))"


def hostname_query(sel: str) -> str:
    return f"node_uname_info{{{sel}}}"


NODE_TARGETS_QUERY = f"count by (instance, job) (last_over_time({NODE_METRIC}[1h]))"
