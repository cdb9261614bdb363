"""run_schedule's concurrency slots: a finished request's slot is refilled in the same loop
step when the next request is due, and requests that are not due yet are never sent early."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from wattserve.bench.runner import run_schedule
from wattserve.engines.base import EngineBase
from wattserve.types import Chunk, Request, Usage


class GatedEngine(EngineBase):
    """Each request streams one chunk once the test opens its gate (``release(id)``)."""

    name = "gated"

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Future[None]] = {}
        self.started: list[str] = []

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        self.started.append(request.id)
        gate = self.gates[request.id] = asyncio.get_running_loop().create_future()
        await gate
        yield Chunk("x", time.perf_counter(), finish_reason="stop", usage=Usage(1, 1))

    def release(self, rid: str) -> None:
        self.gates[rid].set_result(None)


def reqs(n: int) -> list[Request]:
    return [Request(id=f"r{i}", prompt="p", max_tokens=1, input_tokens=1) for i in range(n)]


async def _until(cond: object, limit_s: float = 5.0) -> None:
    deadline = time.perf_counter() + limit_s
    while not cond():  # type: ignore[operator]
        assert time.perf_counter() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_freed_slot_is_refilled_within_two_loop_steps() -> None:
    eng = GatedEngine()
    n, bound = 10, 3
    records: list[dict[str, object]] = []
    task = asyncio.create_task(
        run_schedule(eng, reqs(n), [0.0] * n, bound, on_record=records.append, start_delay_s=0)
    )
    await _until(lambda: len(eng.started) == bound)
    for k in range(n - bound):
        eng.release(f"r{k}")
        # one step wakes the finished request's task; the next send is made in that same step
        # (a dispatcher hand-off would take two more: its wake-up, then the new task's start)
        for _ in range(2):
            await asyncio.sleep(0)
        assert len(eng.started) == bound + k + 1, f"slot of r{k} not refilled"
        assert len(records) == k + 1
    for k in range(n - bound, n):
        eng.release(f"r{k}")
    run = await asyncio.wait_for(task, 5.0)
    assert eng.started == [f"r{i}" for i in range(n)]  # schedule order
    assert sorted(r["request_id"] for r in run.records) == sorted(eng.started)
    assert run.first_full_s is not None and run.last_send_s is not None
    assert run.first_full_s <= run.last_send_s


async def test_finishing_request_does_not_send_one_that_is_not_due() -> None:
    eng = GatedEngine()
    # two due now, two 0.2 s later; bound 1: r0 finishes at once and may send r1 itself,
    # r2 and r3 must wait for their time even though a slot is free
    offsets = [0.0, 0.0, 0.2, 0.2]
    task = asyncio.create_task(run_schedule(eng, reqs(4), offsets, 1, start_delay_s=0))
    await _until(lambda: len(eng.started) == 1)
    eng.release("r0")
    await _until(lambda: len(eng.started) == 2)
    eng.release("r1")
    await _until(lambda: len(eng.started) == 3)
    eng.release("r2")
    await _until(lambda: len(eng.started) == 4)
    eng.release("r3")
    run = await asyncio.wait_for(task, 5.0)
    sent = {c.request_id: c.sent_s - run.t0 for c in run.completions}
    assert sent["r2"] >= 0.2 and sent["r3"] >= 0.2  # never early
    assert min(run.send_error_s) >= 0
    assert len(run.records) == 4 and all(r["error"] is None for r in run.records)


async def test_empty_schedule_returns_a_run() -> None:
    run = await run_schedule(GatedEngine(), [], [], 4, start_delay_s=0)
    assert run.records == [] and run.last_send_s is not None
