"""The alert desk and its notifiers without Prometheus: payload errors, resolved alerts,
repeats, Slack escaping, and a notifier that stays down (a real loopback HTTP server).
The whole chain with the real Alertmanager is tests/api/test_alertmanager_stack.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.api.alerts import Alert, Deduper, parse_payload
from engine.api.desk import AlertDesk, AlertJob
from engine.api.metrics import ApiMetrics
from engine.api.notify import Notifier, deliver, slack_message
from engine.api.settings import ApiSettings
from engine.run.runner import RunSettings
from engine.sources.snapshot import scenario
from tests.support.api_server import ApiServer, simulated_app, simulated_engine
from tests.support.loopback import LoopbackServer, Route

DEADLINE_S = 30.0


pytestmark = pytest.mark.usefixtures("data_dir")


def payload(*alerts: dict[str, Any], group: str = '{}:{alertname="HighCPU"}') -> dict[str, Any]:
    return {"version": "4", "groupKey": group, "status": "firing", "receiver": "quorum",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "truncatedAlerts": 0, "alerts": list(alerts)}  # fmt: skip


def alert(status: str = "firing", fingerprint: str = "abc", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": "HighCPU", **labels}, "annotations": {},
            "startsAt": "2026-12-04T18:00:00Z", "fingerprint": fingerprint}  # fmt: skip


def metric_total(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_payload_errors_are_one_field_level_line() -> None:
    with pytest.raises(ValueError, match=r'^version: must be "4"'):
        parse_payload({**payload(), "version": "3"})
    with pytest.raises(ValueError, match=r"^alerts\[0\]\.status: must be firing or resolved"):
        parse_payload(payload({"status": "burning", "labels": {}}))
    with pytest.raises(ValueError, match=r"^alerts\[0\]\.labels: must be an object of strings"):
        parse_payload(payload({"status": "firing", "labels": {"a": 1}}))


def test_repeats_within_the_window_are_dropped_and_resolved_ends_it() -> None:
    dedupe = Deduper(window_s=60)
    firing = Alert("firing", {"alertname": "X"}, fingerprint="f1")
    assert dedupe.first("g", firing, now=0)
    assert not dedupe.first("g", firing, now=30)
    assert dedupe.first("g", Alert("firing", {"alertname": "Y"}, fingerprint="f2"), now=30)
    assert dedupe.first("g", firing, now=61)  # the window has passed
    dedupe.forget("g", firing)
    assert dedupe.first("g", firing, now=62)


def test_the_route_answers_at_once_and_sorts_the_alerts(data_dir: Path) -> None:
    # No Prometheus configured: a queued alert fails in the background, never in the answer.
    with ApiServer(simulated_app(data_dir)) as api, httpx.Client(base_url=api.url) as client:
        bad = client.post("/api/alertmanager", json={**payload(), "version": "2"})
        first = client.post("/api/alertmanager", json=payload(alert(instance="h:9100")))
        repeat = client.post("/api/alertmanager", json=payload(alert(instance="h:9100")))
        resolved = client.post(
            "/api/alertmanager", json=payload(alert("resolved", instance="h:9100"))
        )
        unlabelled = client.post("/api/alertmanager", json=payload(alert(fingerprint="zz")))
        assert bad.status_code == 422 and bad.json()["detail"].startswith("version: ")
        assert first.status_code == 202 and first.json()["queued"] == 1
        assert repeat.json() == {"queued": 0, "deduplicated": 1, "resolved": 0, "dropped": 0}
        assert resolved.json()["resolved"] == 1
        assert unlabelled.json()["queued"] == 1
        deadline = time.monotonic() + DEADLINE_S
        text = ""
        while time.monotonic() < deadline:  # the worker's outcome, polled with a deadline
            text = client.get("/metrics").text
            done = metric_total(text, "quorum_alerts_total", action="failed")
            if done >= 1 and metric_total(text, "quorum_alerts_total", action="skipped") >= 1:
                break
            client.get("/healthz")  # a real request between polls, no bare sleep
        assert metric_total(text, "quorum_alerts_total", action="failed") == 1
        assert metric_total(text, "quorum_alerts_total", action="skipped") == 1
        assert client.get("/api/runs").json()["runs"] == []  # nothing was analysed


def test_model_text_is_escaped_for_slack_mrkdwn(data_dir: Path) -> None:
    engine = simulated_engine(data_dir)
    snap = scenario("cpu-saturation")
    result = engine.analyze(snap, RunSettings())
    result.insights[0].title = "<!channel> & <http://evil.example|click here>"
    result.insights[0].observation = "*bold* <@U123>"
    message = slack_message(
        result, Alert("firing", {"alertname": "A<b>"}), "h:9100", "http://dash/?run=1", snap
    )
    text = str(message)
    assert "<!channel>" not in text and "<http://evil" not in text and "<@U123>" not in text
    assert "&lt;!channel&gt; &amp; &lt;http://evil.example|click here&gt;" in text
    assert "A&lt;b&gt;" in message["text"]
    assert "<http://dash/?run=1|Open the run in Quorum>" in text  # our own link stays a link
    assert "`cpu_util_pct` 98" in text  # the insight's metrics, with their values


def test_a_failing_notifier_is_retried_a_bounded_number_of_times(data_dir: Path) -> None:
    engine = simulated_engine(data_dir)
    with LoopbackServer({"/slack": Route(status=500, chunks=[b"down"])}) as receiver:
        settings = ApiSettings(slack_webhook_url=f"{receiver.url}/slack", notify_attempts=3,
                               notify_backoff_s=0.01)  # fmt: skip
        metrics = ApiMetrics()
        desk = AlertDesk(
            settings, metrics,
            read_snapshot=lambda instance, job: scenario("disk-io-bound"),
            analyze=lambda snap: engine.analyze(snap, RunSettings()),
            link=lambda run_id: f"http://dash/?run={run_id}",
        )  # fmt: skip

        async def handle() -> None:
            await desk.start()
            try:
                await desk.handle(AlertJob("g", Alert("firing", {"instance": "db:9100"})))
            finally:
                await desk.stop()

        asyncio.run(handle())
    assert [r.path for r in receiver.requests] == ["/slack"] * 3
    text = metrics.exposition().decode()
    assert metric_total(text, "quorum_notifications_total", notifier="slack", outcome="failed") == 1
    assert engine.history is not None and len(engine.history.load()) == 1  # the run is kept


def test_a_notifier_error_never_names_its_url(caplog: pytest.LogCaptureFixture) -> None:
    secret_url = "http://127.0.0.1:9/services/T000/B000/SECRETPART"

    async def send() -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            return await deliver(
                client, Notifier("slack", secret_url), {"text": "x"}, attempts=2, backoff_s=0.01
            )

    assert asyncio.run(send()) is False
    assert caplog.records and "SECRETPART" not in caplog.text
    assert "SECRETPART" not in repr(Notifier("slack", secret_url))


def test_replicas_sharing_redis_share_the_dedupe_window(redis_url: str, tmp_path: Path) -> None:
    from engine.api.app import create_app
    from engine.service import Engine
    from engine.store.history import History
    from engine.store.redis_store import RedisResultCache

    def replica(name: str) -> ApiServer:
        engine = simulated_engine(tmp_path / name)
        shared = Engine(engine.backend, cache=RedisResultCache(redis_url),
                        history=History(tmp_path / name / "history.jsonl"))  # fmt: skip
        return ApiServer(create_app(shared, ApiSettings()))

    body = payload(alert(instance="h:9100", fingerprint="shared-1"))
    with replica("a") as first, replica("b") as second:
        one = httpx.post(f"{first.url}/api/alertmanager", json=body, timeout=10).json()
        other = httpx.post(f"{second.url}/api/alertmanager", json=body, timeout=10).json()
        resolved = payload(alert("resolved", instance="h:9100", fingerprint="shared-1"))
        httpx.post(f"{first.url}/api/alertmanager", json=resolved, timeout=10)
        again = httpx.post(f"{second.url}/api/alertmanager", json=body, timeout=10).json()
    assert one["queued"] == 1 and other["deduplicated"] == 1 and other["queued"] == 0
    assert again["queued"] == 1  # resolved on one replica: the window ended for all


def test_secrets_come_from_the_environment_or_secrets_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.api.settings import from_environment

    secrets = tmp_path / "secrets.toml"
    secrets.write_text('api_token = "from-file"\nslack_webhook_url = "https://hooks.test/x"\n')
    for name in ("QUORUM_API_TOKEN", "QUORUM_SLACK_WEBHOOK_URL", "QUORUM_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = from_environment(secrets)
    assert settings.token == "from-file" and settings.slack_webhook_url == "https://hooks.test/x"
    assert settings.webhook_url is None
    monkeypatch.setenv("QUORUM_API_TOKEN", "from-env")
    settings = from_environment(secrets)
    assert settings.token == "from-env"
    assert "from-env" not in repr(settings) and "hooks.test" not in repr(settings)
