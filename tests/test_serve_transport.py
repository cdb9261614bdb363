"""serve/transport.py: the response head waits for the first body bytes (one write, not two)."""

from __future__ import annotations

import asyncio

from wattserve.serve.transport import CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_head_and_body_leave_in_one_write_and_later_writes_pass_straight_through():
    t = FakeTransport()
    c = CoalescingTransport(t, asyncio.get_running_loop())
    c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == []  # held
    c.write(b"ok")
    assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    c.write(b"more")
    assert t.writes[-1] == b"more" and len(t.writes) == 2
    await asyncio.sleep(0)  # the scheduled flush finds nothing held
    assert len(t.writes) == 2


async def test_a_lone_head_is_flushed_at_the_end_of_the_loop_iteration_or_on_close():
    t = FakeTransport()
    c = CoalescingTransport(t, asyncio.get_running_loop())
    c.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    await asyncio.sleep(0)
    assert t.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    c.write(b"HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n")
    c.close()
    assert t.writes[-1].startswith(b"HTTP/1.1 500") and t.closed
    assert (
        c.get_extra_info("peername") == "info:peername"
    )  # everything else is the real transport's
