"""The API server's own settings: its token, the notifiers, Prometheus and the dashboard link.

Secrets (the bearer token, the notifier URLs, which carry their own credentials, a
Prometheus URL with userinfo) come from the environment or `.streamlit/secrets.toml` and
are kept out of `repr`, so a log line or an error that prints the settings shows none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.api.sources import PrometheusAccess
from engine.settings import DEFAULT_DASHBOARD_URL, SECRETS_FILE, Settings, read_secrets

MAX_BODY_BYTES = 1 * 2**20  # the cap; a snapshot or an alert payload is a few KiB


@dataclass(frozen=True)
class ApiSettings:
    token: str | None = field(default=None, repr=False)
    # Where `source=prometheus` and alerts read snapshots (no URL: those answer 422).
    prometheus: PrometheusAccess = field(default_factory=PrometheusAccess)
    dashboard_url: str = DEFAULT_DASHBOARD_URL  # the run link: <dashboard_url>/?run=<id>
    slack_webhook_url: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    # Which alert labels name the node_exporter target and its job.
    instance_label: str = "instance"
    job_label: str = "job"
    alert_dedupe_s: float = 300.0  # repeats of one group key within this are not re-analysed
    notify_attempts: int = 4  # per notifier and message, the first try included
    notify_backoff_s: float = 1.0  # doubled after each failure
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if self.alert_dedupe_s < 0:
            raise ValueError(f"alert dedupe: must be ≥ 0 seconds, got {self.alert_dedupe_s:g}")
        if self.notify_attempts < 1:
            raise ValueError(f"notify attempts: must be ≥ 1, got {self.notify_attempts}")
        if not self.instance_label.strip():
            raise ValueError("alert instance label: must not be empty")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that leaves the process."""
        values = (self.token, self.slack_webhook_url, self.webhook_url,
                  self.prometheus.url, self.prometheus.token)  # fmt: skip
        return tuple(v for v in values if v)


def from_settings(settings: Settings, **overrides: Any) -> ApiSettings:
    """The secrets `settings` found (environment first, then secrets.toml), the rest from
    `overrides` (the command line)."""
    return ApiSettings(
        token=settings.api_token.value,
        slack_webhook_url=settings.slack_webhook_url.value,
        webhook_url=settings.webhook_url.value,
        **overrides,
    )


def from_environment(secrets_file: Path = SECRETS_FILE, **overrides: Any) -> ApiSettings:
    """Secrets from the environment or `secrets_file`, the rest from `overrides`."""
    return from_settings(Settings.load(secrets=read_secrets(secrets_file)), **overrides)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced by ***."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
