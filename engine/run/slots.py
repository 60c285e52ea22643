"""Scheduling to the server's slots, on the client.

An LLM server runs a fixed number of requests at once (Ollama: `OLLAMA_NUM_PARALLEL`,
default 1; llama.cpp: `--parallel`); the rest wait in its queue, where the client can
neither see them nor tell a slow answer from a queued one. So Quorum keeps the queue
itself: it sends at most `slots` requests at once, knows exactly how long each one
waited, and starts an agent's timeout when its request is sent, not when it was queued.

`SlotScheduler` is pure asyncio (no I/O); `ServerSlots` says how many slots there are
and where that number came from (see `engine/backends/slot_probe.py` for asking a server).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


class SlotScheduler:
    """Lets at most `slots` callers in at once, first come first served.

    `slot()` waits for a free slot and yields how long it waited. `try_slot()` takes a
    slot only when one is free and nobody is waiting — for optional work (prefix
    warm-ups) that must never delay an agent.
    """

    def __init__(self, slots: int | None) -> None:
        if slots is not None and slots < 1:
            raise ValueError(f"slots: must be ≥ 1, got {slots}")
        self.slots = slots
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def _has_room(self) -> bool:
        return self.slots is None or self._busy < self.slots

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a slot for the body; yields the seconds spent waiting for it."""
        started = time.perf_counter()
        await self._acquire()
        try:
            yield time.perf_counter() - started
        finally:
            self._release()

    @asynccontextmanager
    async def try_slot(self) -> AsyncIterator[bool]:
        """Yields True holding a slot if one is free right now and nobody waits; else False."""
        if self.waiting or not self._has_room():
            yield False
            return
        self._busy += 1
        try:
            yield True
        finally:
            self._release()

    async def _acquire(self) -> None:
        if not self._waiters and self._has_room():
            self._busy += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # Cancelled after being handed a slot but before running: give it back.
            if waiter.done() and not waiter.cancelled():
                self._release()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _release(self) -> None:
        self._busy -= 1
        self._wake()

    def _wake(self) -> None:
        # Hand free slots to the oldest waiters; the slot is counted as theirs at once,
        # so a newcomer cannot overtake a waiter that has been woken but not yet run.
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._busy += 1
                waiter.set_result(None)
