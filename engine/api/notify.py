"""Where an alert-triggered analysis goes: a Slack incoming webhook and a generic JSON one.

The messages are built by pure functions (`slack_message`, `webhook_message`); `deliver`
posts one with a bounded number of tries and exponential backoff. Model text is
untrusted: in Slack's mrkdwn every `&`, `<` and `>` of it is escaped, so a model cannot
write a link, a mention (`<!channel>`) or formatting of its own. A notifier URL is a
secret (whoever holds it can post to the channel): it is never logged, echoed or put
in an error, which names the notifier by its kind only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from engine.api.alerts import Alert
from engine.records import AnalysisResult, Insight
from engine.sources.snapshot import Snapshot

log = logging.getLogger("engine.api.notify")

TOP_INSIGHTS = 3
_MAX_FIELD = 2900  # Slack's section text limit is 3000 characters


def escape_mrkdwn(text: str) -> str:
    """Slack's own escaping for text that must not be read as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int = _MAX_FIELD) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _metric_values(insight: Insight, snapshot: Snapshot | None) -> str:
    values = []
    for name in insight.metrics:
        value = snapshot.metric(name) if snapshot is not None else None
        shown = "unknown" if value is None else f"{value:g}"
        values.append(f"`{escape_mrkdwn(name)}` {shown}")
    return ", ".join(values)


def _insight_block(insight: Insight, snapshot: Snapshot | None) -> dict[str, Any]:
    lines = [
        f"*[{insight.severity}] {escape_mrkdwn(insight.title)}* (confidence {insight.confidence})",
        escape_mrkdwn(insight.observation),
    ]
    metrics = _metric_values(insight, snapshot)
    if metrics:
        lines.append(f"metrics: {metrics}")
    lines.extend(f"• {escape_mrkdwn(rec)}" for rec in insight.recommendations[:2])
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines))}}


def slack_message(
    result: AnalysisResult, alert: Alert, instance: str, link: str, snapshot: Snapshot | None
) -> dict[str, Any]:
    """Block Kit: what fired where, the tier, the top insights with their metrics, the link."""
    name = escape_mrkdwn(alert.name or "alert")
    where = escape_mrkdwn(instance)
    simulated = " · SIMULATED backend" if result.backend.simulated else ""
    summary = (
        f"*{name}* on `{where}` · tier *{result.tier}* (confidence {result.confidence}) · "
        f"{result.agents_participated}/{result.agents_total} agents · "
        f"{result.execution_time_s:.1f}s{simulated}"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(
            f"Quorum: {alert.name or 'alert'} on {instance}", 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(summary)}},
    ]  # fmt: skip
    blocks.extend(_insight_block(i, snapshot) for i in result.insights[:TOP_INSIGHTS])
    if not result.insights:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No insight."}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the run in Quorum>"}],
        }
    )
    top = escape_mrkdwn(result.insights[0].title) if result.insights else "no insight"
    # `text` is the notification's fallback (and what a screen reader says).
    return {
        "text": _cut(f"Quorum: {name} on {where}: {top} (tier {result.tier})"),
        "blocks": blocks,
    }


def webhook_message(
    result: AnalysisResult, alert: Alert, instance: str, link: str
) -> dict[str, Any]:
    """The generic webhook: the alert, the run's link and the full JSON contract."""
    return {
        "alert": {"status": alert.status, "labels": alert.labels, "starts_at": alert.starts_at,
                  "fingerprint": alert.fingerprint},
        "instance": instance,
        "run_id": result.run_id,
        "link": link,
        "result": result.to_dict(),
    }  # fmt: skip


@dataclass(frozen=True)
class Notifier:
    kind: str  # "slack" or "webhook": how it is named in logs and metrics
    url: str  # a secret

    def __repr__(self) -> str:
        return f"Notifier({self.kind!r}, url=***)"


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


async def deliver(
    client: httpx.AsyncClient,
    notifier: Notifier,
    message: Mapping[str, Any],
    *,
    attempts: int,
    backoff_s: float,
) -> bool:
    """POST `message`; retry network errors, 429 and 5xx up to `attempts` tries in all,
    waiting backoff_s, 2·backoff_s, …; True when the notifier took it."""
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post(notifier.url, json=dict(message))
            problem = f"HTTP {response.status_code}"
            if response.is_success:
                return True
            if not _retryable(response.status_code):
                log.warning("%s notifier refused the message: %s", notifier.kind, problem)
                return False
        except httpx.HTTPError as exc:
            problem = type(exc).__name__  # never str(exc): it may carry the URL
        log.warning("%s notifier failed (%s), try %d of %d", notifier.kind, problem,
                    attempt, attempts)  # fmt: skip
        if attempt < attempts:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    return False


def notifiers(slack_url: str | None, webhook_url: str | None) -> Sequence[Notifier]:
    out = []
    if slack_url:
        out.append(Notifier("slack", slack_url))
    if webhook_url:
        out.append(Notifier("webhook", webhook_url))
    return out
