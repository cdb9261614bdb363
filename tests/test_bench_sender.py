"""SendProcess: queued writes go out at their send times from a child process; run_schedule
hands paced requests to it, and its records carry the child's send stamps."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import wattserve.bench.runner as runner
from wattserve.bench.runner import run_schedule
from wattserve.bench.sender import SendProcess
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
    try:
        with SendProcess() as sender:
            t0 = time.perf_counter() + 0.01
            tickets = [sender.ticket(t0 + 0.005 * i) for i in range(8)]
            for i, tk in enumerate(reversed(tickets)):  # queued out of order
                tk.writer(tr, b"req%d;" % (7 - i))
            time.sleep(0.1)  # noqa: ASYNC251 - the loop blocked past every send time
            assert all(tk.sent_s is not None for tk in tickets), "not written during the block"
            await _until(lambda: sum(len(d) for _, d in sink.got) == 8 * 5)
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
        with SendProcess() as sender:
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


async def test_a_write_the_socket_cuts_short_is_finished_by_the_transport() -> None:
    server, sink, tr = await _pair()
    tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 2048  # 512 KB: far more than the socket buffer takes at once
    try:
        with SendProcess() as sender:
            tk = sender.ticket(time.perf_counter() + 0.01)
            tk.writer(tr, data)
            await _until(lambda: sum(len(d) for _, d in sink.got) >= len(data))
            assert tk.sent_s is not None
        assert b"".join(d for _, d in sink.got) == data
    finally:
        tr.close()
        server.close()


def _reqs(n: int) -> list[Request]:
    return [
        Request(id=f"r{i}", prompt="hi", max_tokens=4, endpoint="completions") for i in range(n)
    ]


class _Spy(SendProcess):
    made: list[_Spy] = []

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.child_pid = 0
        _Spy.made.append(self)

    def start(self, timeout_s: float = 10.0) -> None:
        super().start(timeout_s)
        assert self._proc is not None
        self.child_pid = self._proc.pid


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[_Spy]:
    _Spy.made = []
    monkeypatch.setattr(runner, "SendProcess", _Spy)
    return _Spy


async def test_run_schedule_sends_paced_http_requests_from_the_process(
    mock_server: str, spy: type[_Spy]
) -> None:
    eng = OpenAIHTTPEngine(mock_server, model="mock")
    try:
        n = 20
        offsets = [0.004 * i for i in range(n)]
        run = await run_schedule(eng, _reqs(n), offsets, None)
        burst = await run_schedule(eng, _reqs(4), [0.0] * 4, None)
    finally:
        await eng.aclose()
    assert len(spy.made) == 1, "one send process for the paced run, none for the burst"
    assert spy.made[0].child_pid > 0 and spy.made[0]._proc is None  # started, then ended
    assert all(c.ok for c in run.completions + burst.completions)
    assert len(run.completions) == n
    # sent_s is the child's stamp: never before the send time, and TTFT is measured from it
    for rec in run.records:
        assert rec["sent_s"] >= run.t0 + rec["scheduled_s"]
        assert rec["first_token_s"] > rec["sent_s"]
    assert min(run.send_error_s) >= 0
    assert sorted(run.send_error_s)[n // 2] < 0.01


async def test_run_schedule_paces_on_the_loop_when_asked(mock_server: str, spy: type[_Spy]) -> None:
    eng = OpenAIHTTPEngine(mock_server, model="mock")
    try:
        run = await run_schedule(
            eng, _reqs(5), [0.003 * i for i in range(5)], None, send_process=False
        )
    finally:
        await eng.aclose()
    assert spy.made == []
    assert all(c.ok for c in run.completions)
    assert min(run.send_error_s) >= 0
