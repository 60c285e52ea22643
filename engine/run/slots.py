"""Scheduling to the server's slots, on the client.

An LLM server runs a fixed number of requests at once (Ollama: `OLLAMA_NUM_PARALLEL`,
default 1; llama.cpp: `--parallel`); the rest wait in its queue, where the client can
neither see them nor tell a slow answer from a queued one. So Quorum keeps the queue
itself: it sends at most `slots` requests at once, knows exactly how long each one
waited, and starts an agent's timeout when its request is sent, not when it was queued.

`SlotScheduler` is pure asyncio (no I/O); `ServerSlots` (engine/backends/server_slots.py)
says how many slots there are and where that number came from (see
`engine/backends/slot_probe.py` for asking a server).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# The record and the setting live in the backends layer (asking a server needs them);
# re-exported here for the run's code and its callers.
from engine.backends.server_slots import ServerSlots as ServerSlots
from engine.backends.server_slots import parse_slots_setting as parse_slots_setting
from engine.backends.server_slots import slots_from_config as slots_from_config


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


def limit_of(server_slots: int | None, max_concurrency: int | None) -> int | None:
    """Requests to send at once: the server's slots, under the user's `max_concurrency`."""
    known = [n for n in (server_slots, max_concurrency) if n is not None]
    return min(known) if known else None
