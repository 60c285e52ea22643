"""How many requests a server runs at once, and where that number came from.

The record and the `[server] slots` / `--server-slots` setting live here, in the backends
layer, because asking a server (slot_probe.py) and configuring endpoints (endpoints.py)
need them as much as the run's scheduler (engine/run/slots.py) does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine import config


@dataclass(frozen=True)
class ServerSlots:
    """How many requests the server runs at once (None: no known limit) and why we think so."""

    slots: int | None
    source: str
    # An Ollama-protocol server that does not report its slots: `learn` while they are
    # still to be learned (engine/backends/slot_probe.py; `slots` is then a safe 1), `learned` once
    # they are; `server` names its software and version, when known.
    learn: bool = False
    server: str = ""
    learned: bool = False

    def __post_init__(self) -> None:
        if self.slots is not None and self.slots < 1:
            raise ValueError(f"server slots: must be ≥ 1, got {self.slots}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSlots:
        slots = data.get("slots")
        return cls(
            int(slots) if slots is not None else None,
            str(data.get("source", "")),
            bool(data.get("learn", False)),
            str(data.get("server", "")),
            bool(data.get("learned", False)),
        )


def parse_slots_setting(value: str | int | None) -> int | None:
    """`auto` (or None) → None (ask the server); a whole number ≥ 1 → that number."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text == "auto":
            return None
        try:
            number = int(text)
        except ValueError:
            raise ValueError(
                f"server slots: must be 'auto' or a whole number ≥ 1, got {value!r}"
            ) from None
    if number < 1:
        raise ValueError(f"server slots: must be 'auto' or a whole number ≥ 1, got {number}")
    return number


def slots_from_config(path: str | Path | None) -> int | None:
    """`[server] slots` of quorum.toml: None for `auto` or when absent; ValueError naming
    the field when it is wrong."""
    table = config.table(path, "server")
    unknown = sorted(set(table) - {"slots"})
    if unknown:
        raise ValueError(f"{path}: server.{unknown[0]}: unknown setting (known: slots)")
    try:
        return parse_slots_setting(table.get("slots"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}".replace("server slots:", "server.slots:")) from None
