"""The Prometheus source without Prometheus: PromQL, answers, target choice, settings,
credentials, and the client against canned answers on a loopback HTTP server."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.run.agents import agent_user_prompt, consolidation_user_prompt, read_prompt
from engine.sources import prometheus as prom
from engine.sources.snapshot import FIELDS, Snapshot, SnapshotError, scenario
from tests.support.loopback import LoopbackServer, Route


def vector(*values: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    result = [{"metric": labels or {}, "value": [1700000000.0, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def targets_answer(*targets: tuple[str, str, str]) -> dict[str, Any]:
    active = [
        {"labels": {"instance": i, "job": j}, "health": h, "lastError": "" if h == "up" else "EOF"}
        for i, j, h in targets
    ]
    return {"status": "success", "data": {"activeTargets": active, "droppedTargets": []}}


# --- PromQL ---------------------------------------------------------------------------------


def test_every_node_query_selects_the_target_and_uses_the_window() -> None:
    sel = prom.selector("10.0.0.5:9100", "node")
    queries = prom.node_queries(sel, "2m", "/data")
    required = {f.name for f in FIELDS if f.required}
    assert set(queries) == required
    for name, query in queries.items():
        assert 'instance="10.0.0.5:9100",job="node"' in query, name
        assert query.count("(") == query.count(")"), name
        if "rate(" in query:
            assert "[2m]" in query and "[1m]" not in query, name
    assert 'mountpoint="/data"' in queries["disk_space_pct"]
    assert "node_vmstat_oom_kill" in queries["mem_oom_kills"]
    assert "node_disk_io_time_weighted_seconds_total" in queries["disk_queue_depth"]


def test_label_values_are_escaped() -> None:
    assert prom.selector('we"ird\\host') == 'instance="we\\"ird\\\\host"'
    assert prom.selector("h:1", "") == 'instance="h:1"'


# --- answers ----------------------------------------------------------------------------------


def test_samples_from_vector_and_scalar_answers() -> None:
    samples = prom.parse_samples(vector("12.5", labels={"instance": "a"}))
    assert samples[0].value == 12.5 and samples[0].labels == {"instance": "a"}
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert prom.parse_samples(scalar)[0].value == 3.0


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}, "bad_data: parse error"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}}, "not a number"),
        ("<html>", "not a Prometheus API response"),
    ],
)  # fmt: skip
def test_bad_answers_say_why(payload: Any, words: str) -> None:
    with pytest.raises(prom.QueryError, match=words):
        prom.parse_samples(payload)


@pytest.mark.parametrize(
    ("name", "values", "expected", "problem"),
    [
        ("cpu_util_pct", ["42.4"], 42.4, None),
        ("cpu_util_pct", [], None, "no data"),
        ("cpu_util_pct", ["NaN"], None, "NaN"),
        ("p95_latency_ms", ["+Inf"], None, "+Inf"),
        ("disk_queue_depth", ["-Inf"], None, "-Inf"),
        ("cpu_util_pct", ["1", "2"], None, "2 series"),
        ("cpu_util_pct", ["101.5"], 100.0, None),  # rate extrapolation overshoot: clamped
        ("cpu_util_pct", ["-0.3"], 0.0, None),
        ("error_rate_pct", ["250"], None, "outside 0…100 %"),
        ("net_drops_per_s", ["-5"], None, "outside ≥ 0"),
    ],
)
def test_field_values_are_numbers_in_range_or_unknown(
    name: str, values: list[str], expected: float | None, problem: str | None
) -> None:
    reading = prom.field_value(name, prom.parse_samples(vector(*values)))
    assert reading.value == expected
    if problem is None:
        assert reading.problem is None
    else:
        assert reading.problem is not None and problem in reading.problem


def test_targets_node_exporters_first() -> None:
    answer = targets_answer(
        ("b:8000", "svc", "up"), ("z:9100", "node", "up"), ("a:9090", "prom", "up")
    )
    targets = prom.parse_targets(answer, {("z:9100", "node")})
    assert [t.instance for t in targets] == ["z:9100", "a:9090", "b:8000"]
    assert targets[0].node and not targets[1].node
    assert targets[0].label == "z:9100 (node, node_exporter, up)"


def test_choosing_the_target() -> None:
    node = prom.Target("h1:9100", "node", "up", node=True)
    other = prom.Target("h2:9100", "node", "up", node=True)
    svc = prom.Target("h1:8000", "svc", "up")
    assert prom.choose_target([node, svc]) is node  # the only node_exporter
    assert prom.choose_target([node, other, svc], "h2:9100") is other
    with pytest.raises(prom.PrometheusError, match="several node_exporter targets"):
        prom.choose_target([node, other])
    with pytest.raises(prom.PrometheusError, match=r"'nope:1' is not a target.*h1:9100"):
        prom.choose_target([node, svc], "nope:1")
    with pytest.raises(prom.PrometheusError, match="no node_exporter target"):
        prom.choose_target([svc])
    with pytest.raises(
        prom.PrometheusError, match=r"'web' has no active target \(jobs: node, svc\)"
    ):
        prom.choose_target([node, svc], job="web")
    with pytest.raises(prom.PrometheusError) as err:
        prom.choose_target([svc], "x:1")
    assert err.value.field == "instance"


def test_snapshot_keeps_unknown_fields_unknown_and_names_the_instance() -> None:
    target = prom.Target("10.1.2.3:9100", "node", "up", node=True)
    values: dict[str, float | None] = {f.name: None for f in FIELDS}
    values["mem_util_pct"] = 50.0
    snap = prom.build_snapshot(values, target, cores=None, host=None)
    assert snap.cpu_util_pct is None and snap.mem_util_pct == 50.0
    assert snap.host == "10.1.2.3:9100" and snap.source == "prometheus:10.1.2.3:9100"
    assert snap.cpu_count == 1
    assert snap.quantised()["cpu_util_pct"] is None
    # Unknown is part of the cache key: it is not the same snapshot as a 0.
    zero = prom.build_snapshot({**values, "cpu_util_pct": 0.0}, target, cores=2, host="web1")
    assert snap.cache_key() != zero.cache_key()
    # Files still need every required field.
    with pytest.raises(SnapshotError, match="cpu_util_pct: is required"):
        Snapshot.from_dict(snap.to_dict())


def test_prompts_say_which_fields_are_unknown() -> None:
    values: dict[str, float | None] = {f.name: 1.0 for f in FIELDS}
    values["disk_util_pct"] = None
    values["p95_latency_ms"] = None
    user = agent_user_prompt("performance", values)
    assert "Unknown (no data; do not assume 0 or healthy): disk_util_pct, p95_latency_ms" in user
    parsed = read_prompt(user)  # the simulated server still reads it
    assert parsed.role == "performance"
    assert "disk_util_pct" not in parsed.values and parsed.values["cpu_util_pct"] == 1
    merged = consolidation_user_prompt(values, [])
    assert "Unknown (no data; do not assume 0 or healthy): disk_util_pct" in merged
    complete = {f.name: 1.0 for f in FIELDS}
    assert "Unknown" not in agent_user_prompt("performance", complete)


# --- settings ---------------------------------------------------------------------------------


def test_settings_from_quorum_toml(tmp_path: Path) -> None:
    path = tmp_path / "quorum.toml"
    path.write_text(
        '[agents.Consolidator]\nmodel = "m"\n'
        '[prometheus]\nurl = "http://prom:9090"\ninstance = "h:9100"\nrate_window = "5m"\n'
        'timeout_s = 2\n[prometheus.queries]\np95_latency_ms = "1000 * my_p95"\nerror_rate_pct = ""\n'
    )
    settings = prom.load_settings(path)
    assert settings.url == "http://prom:9090" and settings.instance == "h:9100"
    assert settings.rate_window == "5m" and settings.timeout_s == 2.0
    assert settings.queries["p95_latency_ms"] == "1000 * my_p95"
    assert settings.queries["error_rate_pct"] == ""  # turned off
    assert (
        settings.queries["request_rate_per_s"] == prom.DEFAULT_SERVICE_QUERIES["request_rate_per_s"]
    )
    assert prom.load_settings(tmp_path / "absent.toml") == prom.PromSettings()


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"rate_window": "soon"}, "prometheus.rate_window"),
        ({"timeout_s": 0}, "prometheus.timeout_s"),
        ({"timeout_s": True}, "prometheus.timeout_s"),
        ({"queries": {"cpu_util_pct": "x"}}, "prometheus.queries.cpu_util_pct"),
        ({"queries": {"p95_latency_ms": 5}}, "prometheus.queries.p95_latency_ms"),
        ({"urll": "x"}, "prometheus.urll"),
        ({"url": 9090}, "prometheus.url"),
    ],
)
def test_settings_errors_name_the_key(table: dict[str, Any], field: str) -> None:
    with pytest.raises(SnapshotError) as err:
        prom.PromSettings.from_dict(table)
    assert err.value.field == field and "\n" not in str(err.value)


# --- credentials ------------------------------------------------------------------------------


def test_credentials_are_kept_out_of_the_url() -> None:
    ep = prom.Endpoint.parse("https://ops:s3cr%2Ft@prom.example:9090/prometheus/", token="tok-123")
    assert ep.url == "https://prom.example:9090/prometheus"
    assert ep.username == "ops" and ep.password == "s3cr/t"
    assert "s3cr" not in repr(ep) and "tok-123" not in repr(ep)
    text = ep.scrub("failed for https://ops:s3cr%2Ft@prom.example with s3cr/t and tok-123")
    assert text == "failed for https://ops:***@prom.example with *** and ***"
    assert prom.Endpoint.parse("localhost:9090").url == "http://localhost:9090"
    for bad in ("ftp://x", "http://"):
        with pytest.raises(SnapshotError) as err:
            prom.Endpoint.parse(bad)
        assert err.value.field == "prometheus"


def test_token_from_env_then_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('prometheus_token = "from-file"\n')
    monkeypatch.delenv(prom.TOKEN_ENV, raising=False)
    assert prom.bearer_token(secrets) == ("from-file", "secrets.toml")
    assert prom.bearer_token(tmp_path / "none.toml") == (None, None)
    monkeypatch.setenv(prom.TOKEN_ENV, "from-env")
    assert prom.bearer_token(secrets) == ("from-env", prom.TOKEN_ENV)


# --- the client against canned answers --------------------------------------------------------


def _routes(query: Route, targets: Route | None = None) -> dict[str, Route]:
    node = targets_answer(("127.0.0.1:9100", "node", "up"))
    return {
        "/api/v1/targets": targets or Route(chunks=[json.dumps(node)]),
        "/api/v1/query": query,
    }


def test_credentials_are_sent_and_never_shown() -> None:
    answer = Route(status=401, chunks=[b"unauthorized: bad token tok-123"])
    with LoopbackServer(_routes(answer, answer)) as server:
        host = server.url.removeprefix("http://")
        ep = prom.Endpoint.parse(f"http://ops:pa55@{host}", token="tok-123")
        with pytest.raises(prom.PrometheusError) as err:
            prom.read_snapshot(ep, prom.PromSettings())
    message = str(err.value)
    assert "HTTP 401" in message and "credentials" in message and server.url in message
    assert "pa55" not in message and "tok-123" not in message and "ops" not in message
    # A token wins over user:pass: one Authorization header, the token's.
    assert server.requests[0].headers["authorization"] == "Bearer tok-123"


def test_basic_auth_from_the_url() -> None:
    with LoopbackServer(_routes(Route(chunks=[json.dumps(vector("1"))]))) as server:
        ep = prom.Endpoint.parse(server.url.replace("http://", "http://ops:pa55@"))
        with prom.PrometheusClient(ep) as client:
            client.query("up")
    expected = "Basic " + base64.b64encode(b"ops:pa55").decode()
    assert server.requests[0].headers["authorization"] == expected


def test_a_non_prometheus_server_is_one_clear_error() -> None:
    page = Route(chunks=[b"<html>hello</html>"], headers={"Content-Type": "text/html"})
    with (
        LoopbackServer(_routes(page, page)) as server,
        pytest.raises(prom.PrometheusError, match=r"HTTP 200, not a Prometheus API answer"),
    ):
        prom.read_snapshot(prom.Endpoint.parse(server.url), prom.PromSettings())


def test_query_errors_and_nan_become_warnings_naming_field_and_query() -> None:
    bad = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected"}

    def answer_for(query: str) -> dict[str, Any]:
        if query.startswith("time() - max(timestamp("):
            return vector("1.5")  # fresh node samples
        if "histogram_quantile" in query:
            return vector("NaN")  # no requests in the window: 0/0
        if "node_memory" in query:
            return vector("+Inf")
        return bad  # every other query: a 400 with Prometheus' error body

    reading = _read_with(answer_for)
    line = next(w for w in reading.warnings if w.startswith("cpu_util_pct:"))
    assert "query error (bad_data: 1:5: parse error: unexpected)" in line
    assert "query: 100 * (1 - sum(rate(node_cpu_seconds_total" in line and "\n" not in line
    nan = next(w for w in reading.warnings if w.startswith("p95_latency_ms:"))
    assert "NaN" in nan and "http_request_duration_seconds_bucket" in nan
    assert next(w for w in reading.warnings if w.startswith("mem_util_pct:")).count("+Inf") == 1
    assert all(reading.snapshot.metric(f.name) is None for f in FIELDS)
    assert list(prom.iter_warnings(reading))[-1].startswith(f"{len(FIELDS)} field(s) unknown: ")


def test_unreachable_prometheus() -> None:
    with LoopbackServer({}) as server:
        url = server.url
    started = time.monotonic()
    with pytest.raises(prom.PrometheusError, match=f"cannot reach {url}"):
        prom.read_snapshot(prom.Endpoint.parse(url), prom.PromSettings())
    assert time.monotonic() - started < prom.DEFAULT_TIMEOUT_S


def test_a_silent_server_times_out_within_the_bound() -> None:
    gate = threading.Event()  # the answer never comes until the test is done
    silent = Route(chunks=[gate, b"{}"])
    with LoopbackServer(_routes(silent, silent)) as server:
        started = time.monotonic()
        settings = prom.PromSettings(timeout_s=0.5, budget_s=2.0)
        with pytest.raises(prom.PrometheusError, match=r"no answer within 0\.5 s"):
            prom.read_snapshot(prom.Endpoint.parse(server.url), settings)
        elapsed = time.monotonic() - started
        gate.set()
    assert 0.4 < elapsed < settings.budget_s + 1.0  # bounded: never a hang


def test_the_whole_reading_shares_one_budget() -> None:
    with (
        LoopbackServer(_routes(Route(chunks=[json.dumps(vector("1"))]))) as server,
        prom.PrometheusClient(prom.Endpoint.parse(server.url), budget_s=0.0) as client,
        pytest.raises(prom.PrometheusError, match=r"no complete answer within 0 s"),
    ):
        client.query("up")
    assert server.requests == []  # out of budget: not even asked


def test_stale_node_series_are_unknown_with_one_warning() -> None:
    def answer_for(query: str) -> dict[str, Any]:
        if query.startswith("time() - max(timestamp("):
            return vector("301")  # the newest node sample is five minutes old
        return vector("7")

    warnings = _read_with(answer_for).warnings
    assert warnings[0].startswith("node_exporter 127.0.0.1:9100: newest sample is 301 s old")
    assert "stale after 60 s" in warnings[0]


def test_a_down_target_names_the_scrape_error() -> None:
    down = targets_answer(("127.0.0.1:9100", "node", "down"))
    reading = _read_with(lambda q: vector("5"), targets=down, node=True)
    assert reading.warnings[0] == (
        "node_exporter 127.0.0.1:9100 (node) is down: EOF; "
        "its CPU, memory, disk and network fields are unknown"
    )
    assert reading.snapshot.cpu_util_pct is None and reading.snapshot.p95_latency_ms == 5.0
    assert all(not math.isnan(v) for v in reading.snapshot.quantised().values() if v is not None)


def _read_with(
    answer_for: Any, targets: dict[str, Any] | None = None, node: bool = True
) -> prom.PromReading:
    """read_snapshot against an in-process transport answering each query by its text."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/targets":
            return httpx.Response(
                200, json=targets or targets_answer(("127.0.0.1:9100", "node", "up"))
            )
        query = request.url.params["query"]
        if query == prom.NODE_TARGETS_QUERY:
            labels = {"instance": "127.0.0.1:9100", "job": "node"} if node else {}
            return httpx.Response(200, json=vector("1", labels=labels))
        answer = answer_for(query)
        return httpx.Response(400 if answer["status"] == "error" else 200, json=answer)

    endpoint = prom.Endpoint.parse("http://prom.invalid:9090")
    return prom.read_snapshot(endpoint, prom.PromSettings(), transport=httpx.MockTransport(handle))


def test_unknown_metrics_are_never_reported_as_within_thresholds() -> None:
    from engine.run import use_method

    healthy = scenario("healthy").quantised()
    partly = {**healthy, "disk_space_pct": None, "p95_latency_ms": None}
    answer = use_method.agent_answer(partly, "reliability")
    observation = answer["findings"][0]["observation"]
    assert "unknown, not checked: disk_space_pct, p95_latency_ms" in observation
    assert "unknown, not checked: disk_space_pct" in "\n".join(
        use_method.grounding_lines(partly, "reliability")
    )
    # A stopped exporter and no service data: a monitoring gap, not an all-clear.
    nothing: dict[str, float | None] = dict.fromkeys(healthy)
    (finding,) = use_method.agent_answer(nothing, "performance")["findings"]
    assert finding["title"] == "No performance data: every metric is unknown"
    assert finding["severity"] == "MEDIUM" and "monitoring gap" in finding["observation"]
