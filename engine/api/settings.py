"""The API server's own settings: its token, the notifiers, Prometheus and the dashboard link.

Secrets (the bearer token, the notifier URLs, which carry their own credentials, a
Prometheus URL with userinfo) come from the environment or `.streamlit/secrets.toml` and
are kept out of `repr`, so a log line or an error that prints the settings shows none.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.api.sources import PrometheusAccess

MAX_BODY_BYTES = 1 * 2**20  # the cap; a snapshot or an alert payload is a few KiB
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"
SECRETS_FILE = Path(".streamlit/secrets.toml")
# env var → secrets.toml key, for each secret the server reads
TOKEN_ENV, TOKEN_KEY = "QUORUM_API_TOKEN", "api_token"
SLACK_ENV, SLACK_KEY = "QUORUM_SLACK_WEBHOOK_URL", "slack_webhook_url"
WEBHOOK_ENV, WEBHOOK_KEY = "QUORUM_WEBHOOK_URL", "webhook_url"


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


def read_secrets(path: Path = SECRETS_FILE) -> dict[str, Any]:
    """secrets.toml as a table; a missing or unreadable file is an empty one."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def secret(env: str, key: str, table: dict[str, Any]) -> str | None:
    """$env, else `key` in secrets.toml; None when neither is set."""
    value = os.environ.get(env, "").strip()
    if value:
        return value
    raw = table.get(key)
    return raw.strip() or None if isinstance(raw, str) else None


def from_environment(secrets_file: Path = SECRETS_FILE, **overrides: Any) -> ApiSettings:
    """Secrets from the environment or secrets.toml, the rest from `overrides` (the CLI)."""
    table = read_secrets(secrets_file)
    return ApiSettings(
        token=secret(TOKEN_ENV, TOKEN_KEY, table),
        slack_webhook_url=secret(SLACK_ENV, SLACK_KEY, table),
        webhook_url=secret(WEBHOOK_ENV, WEBHOOK_KEY, table),
        **overrides,
    )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced by ***."""
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
