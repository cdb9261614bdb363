"""The keep-alive HTTP/1.1 transport (wattserve/openai/transport.py) vs scripted servers."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from wattserve.openai.transport import Origin, Timeouts, UpstreamTimeoutError

T = Timeouts(connect_s=2.0, read_s=2.0, total_s=5.0)


@contextlib.asynccontextmanager
async def scripted(answer):
    """A server on a free 127.0.0.1 port; ``answer`` handles each request; counts connections."""
    stats = {"connections": 0, "requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                stats["requests"] += 1
                if await answer(reader, writer, stats["requests"]) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", stats
    finally:
        server.close()


def _sized(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def test_sized_answers_reuse_one_connection():
    async def answer(r, w, n):
        w.write(_sized(b'{"n": %d}' % n))

    async with scripted(answer) as (url, stats):
        o = Origin(url)
        for i in range(1, 6):
            resp = await o.request("POST", "/chat/completions", b'{"x": 1}', T)
            assert resp.status == 200 and await resp.read() == b'{"n": %d}' % i
            resp.release()
        assert stats == {"connections": 1, "requests": 5}
        o.close()


async def test_chunked_stream_arrives_in_pieces_and_the_connection_is_pooled_after_done():
    async def answer(r, w, n):
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for part in (b"data: 1\n\n", b"data: [DONE]\n\n"):
            w.write(b"%x\r\n%s\r\n" % (len(part), part))
            await w.drain()
            await asyncio.sleep(0.05)
        w.write(b"0\r\n\r\n")

    async with scripted(answer) as (url, stats):
        o = Origin(url)
        for _ in range(2):
            resp = await o.request("POST", "/completions", b"{}", T)
            first = await resp.readany()
            assert first == b"data: 1\n\n"
            second = await resp.readany()
            assert second == b"data: [DONE]\n\n"
            resp.release()  # before the chunked terminator: pooled once it comes
            await asyncio.sleep(0.2)
        assert stats == {"connections": 1, "requests": 2}
        o.close()


async def test_close_delimited_body_ends_at_eof_and_is_not_reused():
    async def answer(r, w, n):
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof")
        return False

    async with scripted(answer) as (url, stats):
        o = Origin(url)
        for _ in range(2):
            resp = await o.request("GET", "/models", b"", T)
            assert await resp.read() == b"until-eof"
            resp.release()
        assert stats["connections"] == 2


async def test_a_kept_alive_connection_the_server_closed_is_replaced_transparently():
    async def answer(r, w, n):
        w.write(_sized(b"ok"))
        await w.drain()
        return False  # the server closes after each answer although it said keep-alive

    async with scripted(answer) as (url, stats):
        o = Origin(url)
        for _ in range(3):
            resp = await o.request("POST", "/completions", b"{}", T)
            assert await resp.read() == b"ok"
            resp.release()
            await asyncio.sleep(0.05)
        assert stats == {"connections": 3, "requests": 3}


async def test_read_timeout_connection_refused_and_a_stream_cut_short():
    async def silent(r, w, n):
        await asyncio.sleep(10)

    async with scripted(silent) as (url, _):
        with pytest.raises(UpstreamTimeoutError):
            await Origin(url).request(
                "POST", "/completions", b"{}", Timeouts(read_s=0.2, total_s=5)
            )

    async with scripted(silent) as (url, _):
        pass
    with pytest.raises(ConnectionError):  # nothing listens there any more
        await Origin(url).request("POST", "/completions", b"{}", T)

    async def cut(r, w, n):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        await w.drain()
        return False

    async with scripted(cut) as (url, _):
        resp = await Origin(url).request("POST", "/completions", b"{}", T)
        assert resp.status == 200
        with pytest.raises(ConnectionResetError):
            await resp.read()


async def test_total_timeout_ends_a_slow_stream():
    async def trickle(r, w, n):
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(50):
            w.write(b"2\r\nok\r\n")
            await w.drain()
            await asyncio.sleep(0.05)

    async with scripted(trickle) as (url, _):
        resp = await Origin(url).request(
            "POST", "/completions", b"{}", Timeouts(read_s=1.0, total_s=0.4)
        )
        with pytest.raises(UpstreamTimeoutError, match="total"):
            while await resp.readany():
                pass
        resp.close()


def test_bad_urls_are_refused():
    with pytest.raises(ValueError):
        Origin("ftp://example.org")
    o = Origin("https://example.org:8443/v1")
    assert (o.host, o.port, o.prefix, o.ssl is not None) == ("example.org", 8443, "/v1", True)


async def test_a_reused_connection_dying_before_any_answer_byte_is_retried_once_on_a_fresh_one():
    async def answer(r, w, n):
        if n == 2:
            return (
                False  # closes the kept-alive connection without a byte, as an idle timeout would
            )
        w.write(_sized(b"ok %d" % n))

    async with scripted(answer) as (url, stats):
        o = Origin(url)
        bodies = []
        for _ in range(2):
            resp = await o.request("POST", "/completions", b"{}", T)
            bodies.append(await resp.read())
            resp.release()
        assert bodies == [b"ok 1", b"ok 3"] and stats == {"connections": 2, "requests": 3}
