"""Pacer: timerfd + spin waits on the monotonic clock, the ms fallback, and realtime()."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from wattserve.bench.pacer import Pacer, realtime


@pytest.mark.parametrize("use_timerfd", [True, False])
async def test_wait_until_never_early_and_sub_ms(use_timerfd: bool) -> None:
    errs = []
    async with Pacer(use_timerfd=use_timerfd) as p:
        for i in range(40):
            t = time.perf_counter() + 0.0005 + 0.0001 * (i % 7)
            await p.wait_until(t)
            errs.append(time.perf_counter() - t)
    # never early; on an idle machine tens of microseconds, bounded loosely for a busy box
    assert min(errs) >= 0
    assert sorted(errs)[20] < 0.002


async def test_timerfd_used_on_linux_and_other_tasks_run_while_waiting() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(5):
            ticks += 1
            await asyncio.sleep(0)

    p = Pacer()
    if os.uname().sysname == "Linux":
        assert p.method == "timerfd+spin"
    task = asyncio.create_task(ticker())
    await p.wait_until(time.perf_counter() + 0.02)
    await task
    assert ticks == 5
    p.close()
    assert p.method == "ms-sleep+yield"  # a closed pacer falls back, still correct
    t = time.perf_counter() + 0.002
    await p.wait_until(t)
    assert time.perf_counter() >= t


async def test_past_deadline_returns_at_once() -> None:
    async with Pacer() as p:
        t0 = time.perf_counter()
        await p.wait_until(t0 - 1.0)
        assert time.perf_counter() - t0 < 0.05


def test_realtime_restores_the_policy() -> None:
    before = os.sched_getscheduler(0)
    with realtime(5) as note:
        assert note == "SCHED_FIFO 5" or note.startswith("normal scheduling")
        if note == "SCHED_FIFO 5":
            assert os.sched_getscheduler(0) == os.SCHED_FIFO
    assert os.sched_getscheduler(0) == before
