"""Alertmanager's webhook (payload version 4): what fired, and which repeats to drop.

Pure parts only: `parse_payload` (every way a payload can be wrong is one field-level
line) and `Deduper`. The work itself (Prometheus, the analysis, the notifiers) is in
engine/api/desk.py, in the background: Alertmanager gets its answer at once.

Alertmanager sends a group again on every `group_interval` change and `repeat_interval`;
an alert (group key + fingerprint) analysed within the dedupe window is not analysed
again. A resolved alert is counted and logged, never analysed, and ends its window so
that the next time it fires it is analysed afresh. With the Redis cache the window is
shared by every replica (`RedisClaims`): Alertmanager may post to any of them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from engine.store.redis_store import RedisLink

AlertStatus = Literal["firing", "resolved"]
MAX_ALERTS = 1000  # per payload; Alertmanager's max_alerts in webhook_configs is 0 (all)


class AlertPayloadError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Alert:
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str = ""
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def identity(self) -> str:
        """Alertmanager's fingerprint, else the sorted labels (older senders omit it)."""
        return self.fingerprint or repr(sorted(self.labels.items()))


@dataclass(frozen=True)
class AlertBatch:
    group_key: str
    alerts: tuple[Alert, ...]

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "firing")

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "resolved")


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise AlertPayloadError(where, "must be an object of strings")
    return dict(value)


def _alert(raw: Any, where: str) -> Alert:
    if not isinstance(raw, Mapping):
        raise AlertPayloadError(where, "must be an object")
    status = raw.get("status")
    if status not in ("firing", "resolved"):
        raise AlertPayloadError(f"{where}.status", f"must be firing or resolved, got {status!r}")
    return Alert(
        status=status,
        labels=_strings(raw.get("labels"), f"{where}.labels"),
        annotations=_strings(raw.get("annotations"), f"{where}.annotations"),
        starts_at=str(raw.get("startsAt", ""))[:64],
        fingerprint=str(raw.get("fingerprint", ""))[:64],
    )


def parse_payload(data: Any) -> AlertBatch:
    """Alertmanager's webhook payload, version 4 (its documented format)."""
    if not isinstance(data, Mapping):
        raise AlertPayloadError("payload", "must be a JSON object (Alertmanager's webhook)")
    version = data.get("version")
    if version != "4":
        raise AlertPayloadError("version", f'must be "4" (Alertmanager\'s), got {version!r}')
    group_key = data.get("groupKey")
    if not isinstance(group_key, str):
        raise AlertPayloadError("groupKey", "must be a string")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise AlertPayloadError("alerts", "must be a list")
    if len(alerts) > MAX_ALERTS:
        raise AlertPayloadError("alerts", f"more than {MAX_ALERTS} alerts in one payload")
    return AlertBatch(group_key, tuple(_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts)))


class Claims(Protocol):
    """A dedupe window shared by replicas: `claim` is True for the first claimant of a
    key within `ttl_s`, False for the others, None when the store cannot be asked."""

    def claim(self, key: str, ttl_s: float) -> bool | None: ...

    def release(self, key: str) -> None: ...


class RedisClaims:
    """`Claims` in Redis: SET NX with an expiry, one key per alert."""

    def __init__(self, link: RedisLink, prefix: str = "quorum:") -> None:
        self.link = link
        self.prefix = f"{prefix}alert:"

    def claim(self, key: str, ttl_s: float) -> bool | None:
        ttl_ms = max(1, int(ttl_s * 1000))
        got = self.link.call(
            "claim an alert", lambda r: r.set(self.prefix + key, 1, nx=True, px=ttl_ms)
        )
        return None if got is None and self.link.degraded else bool(got)

    def release(self, key: str) -> None:
        self.link.call("release an alert", lambda r: r.delete(self.prefix + key))


class Deduper:
    """Alerts analysed within the last `window_s` seconds (thread-safe); with `shared`,
    also by any replica (a store that cannot be asked leaves the decision local)."""

    def __init__(self, window_s: float, shared: Claims | None = None) -> None:
        self.window_s = window_s
        self.shared = shared
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _shared_key(key: tuple[str, str]) -> str:
        return hashlib.sha256("\x00".join(key).encode()).hexdigest()[:32]

    def first(self, group_key: str, alert: Alert, now: float | None = None) -> bool:
        """True (and remembered) when this alert was not analysed within the window."""
        now = time.monotonic() if now is None else now
        key = (group_key, alert.identity())
        with self._lock:
            for old in [k for k, at in self._seen.items() if now - at >= self.window_s]:
                del self._seen[old]
            if key in self._seen:
                return False
            shared = self.shared
            if (
                shared
                and self.window_s > 0
                and shared.claim(self._shared_key(key), self.window_s) is False
            ):
                return False
            self._seen[key] = now
            return True

    def forget(self, group_key: str, alert: Alert) -> None:
        key = (group_key, alert.identity())
        with self._lock:
            self._seen.pop(key, None)
        if self.shared is not None:
            self.shared.release(self._shared_key(key))
