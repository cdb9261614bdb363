"""The gateway on its HTTP server (granian, ``serve/server.py``) on the wire: keep-alive,
pipelining, 100-continue, size limits, bad requests, HEAD, idle timeout, a client that leaves
mid-stream, HTTP/1.0, and the same app on uvicorn (``server: uvicorn``)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from tests.test_serve_support import config, gateway, mock_replicas


def _post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"%sContent-Length: %d\r\n\r\n%s" % (path.encode(), extra, len(body), body)
    )


def _read_answers(
    sock: socket.socket, n: int, timeout_s: float = 10.0
) -> list[tuple[int, dict, bytes]]:
    """Read ``n`` sized HTTP answers off ``sock`` (JSON answers set Content-Length)."""
    sock.settimeout(timeout_s)
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} answer(s): {buf!r}"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        if status == 100:
            continue
        headers = {
            k.strip().lower().decode(): v.strip().decode()
            for k, _, v in (ln.partition(b":") for ln in lines[1:])
        }
        length = int(headers.get("content-length", 0))
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


@pytest.fixture(scope="module")
def gw():
    with (
        mock_replicas(1, process=False) as reps,
        gateway(config([reps[0].url], max_body_bytes=4096)) as srv,
    ):
        yield srv


def _sock(gw) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def _body(i: int, stream: bool = False) -> bytes:
    return json.dumps(
        {"model": "tiny", "prompt": f"p{i}", "temperature": 0, "stream": stream}
    ).encode()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(gw):
    with _sock(gw) as s:
        s.sendall(_post("/v1/completions", _body(1)))
        ((st, h, b),) = _read_answers(s, 1)
        assert (
            st == 200 and h["x-wattserve-cache"] == "miss" and json.loads(b)["choices"][0]["text"]
        )
        # three requests in one write (pipelining), a mix of routes: three answers, in order
        s.sendall(
            _post("/v1/completions", _body(1))
            + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
            + _post("/v1/completions", b"{not json")
        )
        answers = _read_answers(s, 3)
        assert [a[0] for a in answers] == [200, 200, 400]
        assert answers[0][1]["x-wattserve-cache"] == "hit"
        assert json.loads(answers[1][2]) == {"status": "ok"}
        assert json.loads(answers[2][2])["error"]["code"] == "invalid_json"


def test_expect_100_continue(gw):
    with _sock(gw) as s:
        body = _body(2)
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        ((st, _, b),) = _read_answers(s, 1)
        assert st == 200


def test_a_body_over_the_limit_is_refused_before_it_is_sent(gw):
    with _sock(gw) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        ((st, h, b),) = _read_answers(s, 1)  # answered without the body ever being sent
        assert (
            st == 413
            and h["connection"] == "close"
            and json.loads(b)["error"]["code"] == "body_too_large"
        )
        assert s.recv(100) == b""  # and the connection is closed


def test_malformed_requests_get_a_400_and_head_gets_no_body(gw):
    with _sock(gw) as s:
        s.sendall(b"NOT-HTTP\r\n\r\n")
        ((st, h, _),) = _read_answers(s, 1)
        assert st == 400 and h["connection"] == "close"
    with _sock(gw) as s:
        s.sendall(
            b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        s.settimeout(10)
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b'{"status":"ok"}'):
            chunk = s.recv(65536)
            assert chunk
            data += chunk
        head_answer = data[: data.index(b"HTTP/1.1 ", 1)]
        assert head_answer.endswith(b"\r\n\r\n")  # the HEAD answer (405: GET only) carries no body
        assert data.count(b'{"status":"ok"}') == 1


def test_idle_keep_alive_connections_are_closed():
    limits = {"keep_alive_s": 0.5}
    with (
        mock_replicas(1, process=False) as reps,
        gateway(config([reps[0].url], limits=limits)) as srv,
    ):
        with _sock(srv) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            assert _read_answers(s, 1)[0][0] == 200
            t0 = time.monotonic()
            s.settimeout(5)
            assert s.recv(100) == b""  # closed by the server
            assert time.monotonic() - t0 < 3


def test_a_client_leaving_mid_stream_ends_the_upstream_request_and_caches_nothing():
    with (
        mock_replicas(1, process=False, output_len=200, token_delay_ms=10) as reps,
        gateway(config([reps[0].url])) as srv,
    ):
        gwy = srv.service.gateway
        with _sock(srv) as s:
            s.sendall(_post("/v1/completions", _body(3, stream=True)))
            s.settimeout(10)
            assert b"text/event-stream" in s.recv(4096)
        deadline = time.monotonic() + 5
        while gwy.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gwy.in_flight == 0 and len(srv.service.cache) == 0
        r = httpx.post(
            srv.url + "/v1/completions", content=_body(3), timeout=20
        )  # served fine afterwards
        assert r.status_code == 200 and r.json()["choices"][0]["text"].count(" tok") == 200


def test_the_same_app_on_uvicorn():
    with (
        mock_replicas(1, process=False) as reps,
        gateway(config([reps[0].url], server="uvicorn")) as srv,
    ):
        import uvicorn

        assert isinstance(srv.server, uvicorn.Server)
        assert httpx.get(srv.url + "/health", headers={"host": ""}).status_code == 400
        r = httpx.post(srv.url + "/v1/completions", content=_body(4), timeout=20)
        assert r.status_code == 200 and r.headers["x-wattserve-replica"]
        with httpx.stream(
            "POST", srv.url + "/v1/completions", content=_body(5, stream=True), timeout=20
        ) as r:
            text = r.read()
        assert r.headers["content-type"].startswith("text/event-stream") and text.endswith(
            b"data: [DONE]\n\n"
        )


def test_an_http10_client_gets_its_stream_without_chunked_framing():
    with (
        mock_replicas(1, process=False, token_delay_ms=5) as reps,
        gateway(config([reps[0].url])) as srv,
    ):
        with _sock(srv) as s:
            body = _body(6, stream=True)
            s.sendall(
                b"POST /v1/completions HTTP/1.0\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            s.settimeout(10)
            data = b""
            while chunk := s.recv(65536):  # the server closes when the stream ends
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()  # ends when the server closes
        assert rest.startswith(b"data: ") and rest.endswith(b"data: [DONE]\n\n")
