"""Alert → analysis → Slack, with the real parts: Debian's prometheus-alertmanager, the real
Prometheus and node_exporter (tests/support/prometheus_stack.py), Quorum's API under uvicorn, and a
loopback Slack-compatible receiver that records what it gets.

Prometheus evaluates a rule that fires at once (`up{job="node"} == 1`), Alertmanager
posts it to Quorum's webhook (with the bearer token, as its http_config sends it) and
posts the group again every few seconds; Quorum answers at once, reads the snapshot for
the alert's instance from Prometheus, runs the (SIMULATED) analysis once and sends one
Slack message and one webhook message. Prometheus also scrapes Quorum's /metrics.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.plumbing import free_port, stop_process
from engine.api.notify import escape_mrkdwn
from engine.api.settings import ApiSettings
from engine.api.sources import PrometheusAccess
from tests.support.api_server import ApiServer, simulated_app
from tests.support.components import skip_loudly
from tests.support.loopback import LoopbackServer, Route
from tests.support.prometheus_stack import START_DEADLINE_S, PromStack

pytestmark = [pytest.mark.prometheus, pytest.mark.usefixtures("data_dir")]

ALERTMANAGER = "prometheus-alertmanager"
TOKEN = "alert-test-token"
DASHBOARD = "http://dashboard.test:8501"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def alertmanager_bin(request: pytest.FixtureRequest) -> str:
    path = shutil.which(ALERTMANAGER)
    if path is None:
        skip_loudly(
            request,
            f"ALERTMANAGER TESTS SKIPPED: {ALERTMANAGER} not found — install it with "
            f"'apt-get install {ALERTMANAGER}' (see README)",
        )
        raise AssertionError("unreachable")
    return path


class Alertmanager:
    """Debian's Alertmanager on a free loopback port, clustering off, its webhook to Quorum."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = workdir / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: quorum\n  group_by: ['alertname', 'instance']\n"
            "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 2s\n"
            "receivers:\n  - name: quorum\n    webhook_configs:\n"
            f"      - url: {webhook_url}\n        send_resolved: true\n"
            f"        http_config:\n          authorization:\n            credentials: {TOKEN}\n"
        )
        self.log_path = workdir / "alertmanager.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.path={workdir / 'am-data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            try:  # the pause between polls: waiting on the process (a crash fails at once)
                self.proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"alertmanager exited with {self.proc.returncode}:\n{self.log()}")
        pytest.fail(f"alertmanager not ready within {START_DEADLINE_S:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.proc)


def metric(api: ApiServer, name: str, **labels: str) -> float:
    text = httpx.get(
        f"{api.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


RULES = """groups:
  - name: quorum-test
    interval: 1s
    rules:
      - alert: NodeExporterUp
        expr: up{job="node"} == 1
        labels:
          severity: page
        annotations:
          summary: fires as soon as node_exporter is scraped
"""


@pytest.fixture
def alert_stack(
    prom_binaries: tuple[str, str], alertmanager_bin: str, tmp_path: Path, data_dir: Path
) -> Iterator[tuple[PromStack, ApiServer, LoopbackServer]]:
    receiver = LoopbackServer({
        "/slack": Route(chunks=[b"ok"], headers={"Content-Type": "text/plain"}),
        "/hook": Route(chunks=[b"{}"]),
    })  # fmt: skip
    stack = PromStack(prom_binaries[0], prom_binaries[1], tmp_path)
    with receiver:
        settings = ApiSettings(
            token=TOKEN, prometheus=PrometheusAccess(url=stack.url, config=str(tmp_path / "none")),
            dashboard_url=DASHBOARD, slack_webhook_url=f"{receiver.url}/slack",
            webhook_url=f"{receiver.url}/hook", alert_dedupe_s=300.0,
        )  # fmt: skip
        with ApiServer(simulated_app(data_dir, settings)) as api:
            (tmp_path / "rules.yml").write_text(RULES)
            stack.extra_scrapes = (
                f"  - job_name: quorum\n    authorization:\n      credentials: {TOKEN}\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{api.port}']\n"
            )
            # Alertmanager first: Prometheus sends a firing alert once, then every minute.
            manager = Alertmanager(alertmanager_bin, tmp_path, f"{api.url}/api/alertmanager")
            try:
                manager.wait_ready()
                stack.extra_config = (
                    f"rule_files: ['{tmp_path / 'rules.yml'}']\n"
                    f"alerting:\n  alertmanagers:\n    - static_configs:\n"
                    f"        - targets: ['127.0.0.1:{manager.port}']\n"
                )
                try:
                    stack.start()
                    yield stack, api, receiver
                finally:
                    stack.stop()
            finally:
                manager.stop()


def test_one_firing_alert_is_one_analysis_and_one_slack_message(
    alert_stack: tuple[PromStack, ApiServer, LoopbackServer],
) -> None:
    stack, api, receiver = alert_stack

    def posts(path: str) -> list[Any]:
        return [r.json for r in list(receiver.requests) if r.path == path]

    # Alertmanager resends the group every few seconds: wait until Quorum has dropped at
    # least one repeat, so "exactly one" below is checked after a repeat arrived.
    stack.wait_for("a Slack message", lambda: len(posts("/slack")) >= 1)
    stack.wait_for(
        "a repeat of the alert group",
        lambda: metric(api, "quorum_alerts_total", action="deduplicated") >= 1,
    )
    stack.wait_for("the webhook message", lambda: len(posts("/hook")) >= 1)
    slack, hook = posts("/slack"), posts("/hook")
    assert len(slack) == 1 and len(hook) == 1
    assert metric(api, "quorum_alerts_total", action="analysed") == 1
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    runs = httpx.get(f"{api.url}/api/runs", headers=bearer, timeout=10).json()["runs"]
    assert len(runs) == 1 and not runs[0]["cache_hit"]
    run_id = runs[0]["run_id"]
    result = httpx.get(f"{api.url}/api/runs/{run_id}", headers=bearer, timeout=10).json()

    text = str(slack[0])
    assert stack.node_instance in text and "NodeExporterUp" in text
    assert escape_mrkdwn(result["insights"][0]["title"]) in text
    assert f"<{DASHBOARD}/?run={run_id}|" in text
    assert hook[0]["run_id"] == run_id and hook[0]["instance"] == stack.node_instance
    assert hook[0]["result"]["snapshot_key"] == result["snapshot_key"]
    secrets = (TOKEN, receiver.url + "/slack", receiver.url + "/hook")
    assert not any(secret in text for secret in secrets)

    # The real Prometheus scraped Quorum's /metrics: the agent histograms are in PromQL.
    query = "sum by (agent) (quorum_agent_duration_seconds_count{job='quorum'})"
    stack.wait_for("Quorum's agent histograms in Prometheus", lambda: len(stack.query(query)) >= 6)
    agents = {s["metric"]["agent"] for s in stack.query(query)}
    assert {a["name"] for a in result["agents"]} <= agents
    phases = stack.query(
        "sum by (phase) (quorum_agent_phase_seconds_count{job='quorum', agent='SecurityAnalyst'})"
    )
    assert {s["metric"]["phase"] for s in phases} >= {"client_queue", "prefill", "decode"}
    p95 = stack.query(
        "histogram_quantile(0.95, sum by (le, agent) (quorum_agent_duration_seconds_bucket))"
    )
    assert p95 and all(float(s["value"][1]) > 0 for s in p95)

    # Every query of the Grafana dashboard in docs/ is valid PromQL over these series.
    for title, expr in grafana_queries():
        samples = stack.query(expr)  # an invalid query is an HTTP 400: raise_for_status
        if "Agent duration" in title or "Fresh runs" in title or "Agent outcomes" in title:
            assert samples, title


def grafana_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((REPO / "docs" / "grafana-quorum.json").read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            out.append((panel["title"], expr.replace("$job", ".*").replace("$model", ".*")))
    return out
