"""The alert desk: Alertmanager's alerts analysed in the background, results to notifiers.

`accept` (called by the route) sorts a payload at once: resolved alerts are noted,
repeats dropped, new firing alerts queued. One worker task takes them in turn: the
snapshot from Prometheus for the alert's instance, the analysis (the shared Engine: its
cache, single-flight and history), then each notifier with bounded retries. A notifier
that stays down loses only its message: the run is already in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from starlette.concurrency import run_in_threadpool

from engine.api.alerts import Alert, AlertBatch, Claims, Deduper
from engine.api.metrics import ApiMetrics
from engine.api.notify import Notifier, deliver, notifiers, slack_message, webhook_message
from engine.api.settings import ApiSettings, scrub
from engine.api.sources import SourceError
from engine.records import AnalysisResult
from engine.sources.snapshot import Snapshot

log = logging.getLogger("engine.api.alerts")

QUEUE_SIZE = 256
NOTIFY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AlertJob:
    group_key: str
    alert: Alert


class AlertDesk:
    def __init__(
        self,
        settings: ApiSettings,
        metrics: ApiMetrics,
        *,
        read_snapshot: Callable[[str, str], Snapshot],
        analyze: Callable[[Snapshot], AnalysisResult],
        link: Callable[[str], str],
        shared: Claims | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._read_snapshot = read_snapshot
        self._analyze = analyze
        self._link = link
        self._transport = transport
        self.deduper = Deduper(settings.alert_dedupe_s, shared)
        self._queue: asyncio.Queue[AlertJob] | None = None
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._client = httpx.AsyncClient(timeout=NOTIFY_TIMEOUT_S, transport=self._transport)
        self._worker = asyncio.create_task(self._work(), name="quorum-alert-desk")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._client is not None:
            await self._client.aclose()

    def accept(self, batch: AlertBatch) -> dict[str, int]:
        """Sort one payload at once; the analyses happen later, in the worker."""
        counts = {"queued": 0, "deduplicated": 0, "resolved": 0, "dropped": 0}
        for alert in batch.resolved:
            log.info("alert %s resolved: noted, not analysed", alert.name or alert.identity())
            self.deduper.forget(batch.group_key, alert)
            counts["resolved"] += 1
        for alert in batch.firing:
            if not self.deduper.first(batch.group_key, alert):
                counts["deduplicated"] += 1
                continue
            try:
                self._queued().put_nowait(AlertJob(batch.group_key, alert))
                counts["queued"] += 1
            except asyncio.QueueFull:
                self.deduper.forget(batch.group_key, alert)  # so that a resend is analysed
                counts["dropped"] += 1
        for action, count in counts.items():
            if count:
                self.metrics.alerts.labels(action=action).inc(count)
        return counts

    def _queued(self) -> asyncio.Queue[AlertJob]:
        if self._queue is None:
            raise RuntimeError("the alert desk is not started (the app's lifespan starts it)")
        return self._queue

    async def _work(self) -> None:
        queue = self._queued()
        while True:
            job = await queue.get()
            try:
                await self.handle(job)
            except Exception as exc:  # one bad alert must not stop the desk
                detail = scrub(f"{type(exc).__name__}: {exc}", self.settings.secrets)
                log.error("alert %s: analysis failed: %s", job.alert.name, detail)
                self.metrics.alerts.labels(action="failed").inc()
            finally:
                queue.task_done()

    async def handle(self, job: AlertJob) -> None:
        alert = job.alert
        instance = alert.labels.get(self.settings.instance_label, "")
        if not instance:
            log.warning("alert %s has no %r label: not analysed", alert.name,
                        self.settings.instance_label)  # fmt: skip
            self.metrics.alerts.labels(action="skipped").inc()
            return
        target_job = alert.labels.get(self.settings.job_label, "")
        try:
            snapshot = await run_in_threadpool(self._read_snapshot, instance, target_job)
        except SourceError as exc:
            log.warning("alert %s on %s: no snapshot: %s", alert.name, instance,
                        scrub(str(exc), self.settings.secrets))  # fmt: skip
            self.metrics.alerts.labels(action="failed").inc()
            return
        result = await run_in_threadpool(self._analyze, snapshot)
        self.metrics.alerts.labels(action="analysed").inc()
        log.info("alert %s on %s: run %s, tier %s", alert.name, instance, result.run_id,
                 result.tier)  # fmt: skip
        await self._notify(result, alert, instance, snapshot)

    async def _notify(
        self, result: AnalysisResult, alert: Alert, instance: str, snapshot: Snapshot
    ) -> None:
        assert self._client is not None
        link = self._link(result.run_id)
        for notifier in notifiers(self.settings.slack_webhook_url, self.settings.webhook_url):
            message = (
                slack_message(result, alert, instance, link, snapshot)
                if notifier.kind == "slack"
                else webhook_message(result, alert, instance, link)
            )
            sent = await deliver(self._client, notifier, message,
                                 attempts=self.settings.notify_attempts,
                                 backoff_s=self.settings.notify_backoff_s)  # fmt: skip
            self._count(notifier, sent)

    def _count(self, notifier: Notifier, sent: bool) -> None:
        outcome = "sent" if sent else "failed"
        self.metrics.notifications.labels(notifier=notifier.kind, outcome=outcome).inc()
        if not sent:
            log.error("%s notifier: message lost after %d tries (the run is in the history)",
                      notifier.kind, self.settings.notify_attempts)  # fmt: skip
