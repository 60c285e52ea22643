"""The client-side slot scheduler and the `--server-slots` setting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.run.slots import ServerSlots, SlotScheduler, parse_slots_setting, slots_from_config


async def test_never_more_than_slots_at_once_and_first_come_first_served() -> None:
    scheduler = SlotScheduler(2)
    order: list[int] = []
    peak = 0
    release = [asyncio.Event() for _ in range(5)]

    async def job(i: int) -> float:
        nonlocal peak
        async with scheduler.slot() as waited:
            order.append(i)
            peak = max(peak, scheduler.busy)
            await release[i].wait()
        return waited

    tasks = [asyncio.create_task(job(i)) for i in range(5)]
    await asyncio.sleep(0)  # let every job queue (no time passes in between)
    assert order == [0, 1] and scheduler.waiting == 3
    for i in range(5):
        release[i].set()
        await tasks[i]
    assert order == [0, 1, 2, 3, 4]
    assert peak == 2 and scheduler.busy == 0
    assert tasks[0].result() < tasks[4].result()  # the last one waited


async def test_no_limit_lets_everyone_in() -> None:
    scheduler = SlotScheduler(None)
    async with scheduler.slot(), scheduler.slot(), scheduler.slot():
        assert scheduler.busy == 3 and scheduler.waiting == 0


async def test_a_waiter_cancelled_in_the_queue_gives_nothing_back_twice() -> None:
    scheduler = SlotScheduler(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with scheduler.slot():
            await gate.wait()

    async def wait_for_slot() -> None:
        async with scheduler.slot():
            pass

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(wait_for_slot())
    await asyncio.sleep(0)
    assert scheduler.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    await holder
    assert scheduler.busy == 0 and scheduler.waiting == 0
    async with scheduler.slot() as waited:  # the slot is free again
        assert waited < 1.0


async def test_a_waiter_cancelled_after_being_handed_the_slot_releases_it() -> None:
    scheduler = SlotScheduler(1)
    entered = asyncio.Event()

    async def wait_for_slot() -> None:
        async with scheduler.slot():
            entered.set()

    async with scheduler.slot():
        waiter = asyncio.create_task(wait_for_slot())
        await asyncio.sleep(0)
    # Leaving the block handed the slot to the waiter; cancel it before it runs.
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not entered.is_set()
    assert scheduler.busy == 0


async def test_try_slot_never_overtakes_a_waiter() -> None:
    scheduler = SlotScheduler(1)
    async with scheduler.try_slot() as got:
        assert got and scheduler.busy == 1
        async with scheduler.try_slot() as full:
            assert not full
    first, second = asyncio.Event(), asyncio.Event()

    async def hold(gate: asyncio.Event) -> None:
        async with scheduler.slot():
            await gate.wait()

    holder = asyncio.create_task(hold(first))
    waiter = asyncio.create_task(hold(second))
    await asyncio.sleep(0)
    assert scheduler.waiting == 1
    first.set()
    await holder
    # The freed slot went to the waiter (still holding it), not to optional work.
    async with scheduler.try_slot() as got:
        assert not got
    second.set()
    await waiter
    async with scheduler.try_slot() as got:
        assert got


@pytest.mark.parametrize(
    ("value", "expected"), [("auto", None), (None, None), ("3", 3), (" AUTO ", None), (1, 1)]
)
def test_slots_setting(value: str | int | None, expected: int | None) -> None:
    assert parse_slots_setting(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "many", "2.5", 0])
def test_bad_slots_setting_names_the_field(value: str | int) -> None:
    with pytest.raises(ValueError, match=r"^server slots: must be 'auto' or a whole number"):
        parse_slots_setting(value)


def test_server_slots_round_trip() -> None:
    slots = ServerSlots(4, "reported by the server (llama.cpp /props)")
    assert ServerSlots.from_dict(slots.to_dict()) == slots
    with pytest.raises(ValueError, match="server slots"):
        ServerSlots(0, "x")


def test_slots_from_quorum_toml(tmp_path: Path) -> None:
    path = tmp_path / "quorum.toml"
    assert slots_from_config(path) is None  # no file: auto
    path.write_text("[server]\nslots = 4\n")
    assert slots_from_config(path) == 4
    path.write_text('[server]\nslots = "auto"\n')
    assert slots_from_config(path) is None
    path.write_text("[server]\nslots = 0\n")
    with pytest.raises(ValueError, match=r"quorum.toml: server.slots: must be 'auto' or"):
        slots_from_config(path)
    path.write_text("[server]\nslot = 2\n")
    with pytest.raises(ValueError, match=r"server.slot: unknown setting"):
        slots_from_config(path)
