"""SendThread: queued writes go out at their send times, off the loop; run_schedule hands
paced requests to it, and its records carry the thread's send stamps."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from wattserve.bench.runner import run_schedule
from wattserve.bench.sender import SendThread
from wattserve.engines.openai_http import OpenAIHTTPEngine
from wattserve.types import Request


class Sink(asyncio.Protocol):
    """A server side that stamps the arrival of each chunk of bytes."""

    got: list[tuple[float, bytes]]

    def __init__(self) -> None:
        self.got = []

    def data_received(self, data: bytes) -> None:
        self.got.append((time.perf_counter(), data))


async def _pair() -> tuple[asyncio.AbstractServer, Sink, asyncio.Transport]:
    loop = asyncio.get_running_loop()
    sink = Sink()
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    return server, sink, tr  # type: ignore[return-value]


async def _until(cond: object, limit_s: float = 5.0) -> None:
    deadline = time.perf_counter() + limit_s
    while not cond():  # type: ignore[operator]
        assert time.perf_counter() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_writes_go_out_in_order_at_their_times_while_the_loop_is_blocked() -> None:
    server, sink, tr = await _pair()
    old_switch = sys.getswitchinterval()
    try:
        with SendThread() as sender:
            assert sys.getswitchinterval() < old_switch  # quick GIL hand-off while it runs
            t0 = time.perf_counter() + 0.01
            tickets = [sender.ticket(t0 + 0.005 * i) for i in range(8)]
            for i, tk in enumerate(reversed(tickets)):  # queued out of order
                tk.writer(tr, b"req%d;" % (7 - i))
            time.sleep(0.1)  # noqa: ASYNC251 - the loop blocked past every send time (GIL free)
            assert all(tk.sent_s is not None for tk in tickets), "not written during the block"
            await _until(lambda: sum(len(d) for _, d in sink.got) == 8 * 5)
        assert sys.getswitchinterval() == old_switch
        stamps = [tk.sent_s for tk in tickets]
        assert stamps == sorted(stamps)
        for tk in tickets:
            assert tk.sent_s is not None and tk.sent_s >= tk.due
            assert tk.sent_s - tk.due < 0.03  # tens of us when idle; loose for a busy box
        assert b"".join(d for _, d in sink.got) == b"".join(b"req%d;" % i for i in range(8))
    finally:
        tr.close()
        server.close()


async def test_a_cancelled_send_is_never_written() -> None:
    server, sink, tr = await _pair()
    try:
        with SendThread() as sender:
            due = time.perf_counter() + 0.02
            dropped, kept = sender.ticket(due), sender.ticket(due + 0.005)
            dropped.writer(tr, b"dropped;")
            kept.writer(tr, b"kept;")
            dropped.cancel()
            await _until(lambda: kept.sent_s is not None)
            await _until(lambda: bool(sink.got))
            await asyncio.sleep(0.01)
        assert dropped.sent_s is None
        assert b"".join(d for _, d in sink.got) == b"kept;"
    finally:
        tr.close()
        server.close()


def _reqs(n: int) -> list[Request]:
    return [
        Request(id=f"r{i}", prompt="hi", max_tokens=4, endpoint="completions") for i in range(n)
    ]


async def test_run_schedule_sends_paced_http_requests_from_the_thread(mock_server: str) -> None:
    eng = OpenAIHTTPEngine(mock_server, model="mock")
    seen: list[str] = []

    async def watch() -> None:
        while True:
            seen.extend(t.name for t in threading.enumerate())
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        n = 20
        offsets = [0.004 * i for i in range(n)]
        run = await run_schedule(eng, _reqs(n), offsets, None)
        paced_sends = [c.sent_s for c in run.completions]
        burst = await run_schedule(eng, _reqs(4), [0.0] * 4, None)
    finally:
        watcher.cancel()
        await eng.aclose()
    assert "wattserve-sender" in seen
    assert all(c.ok for c in run.completions + burst.completions)
    assert len(paced_sends) == n
    # sent_s is the thread's stamp: never before the send time, and TTFT is measured from it
    for rec in run.records:
        assert rec["sent_s"] >= run.t0 + rec["scheduled_s"]
        assert rec["first_token_s"] > rec["sent_s"]
    assert min(run.send_error_s) >= 0
    assert sorted(run.send_error_s)[n // 2] < 0.01
    assert not any(t.name == "wattserve-sender" for t in threading.enumerate())


async def test_run_schedule_paces_on_the_loop_when_asked(mock_server: str) -> None:
    eng = OpenAIHTTPEngine(mock_server, model="mock")
    started = threading.active_count()
    try:
        run = await run_schedule(
            eng, _reqs(5), [0.003 * i for i in range(5)], None, send_thread=False
        )
        assert threading.active_count() == started
    finally:
        await eng.aclose()
    assert all(c.ok for c in run.completions)
    assert min(run.send_error_s) >= 0
