"""The gateway's limits on the wire (``limits:``, serve/limits.py, serve/server.py): framing
and smuggling variants, Host checks, no redirect to a foreign host, header and body timeouts,
header/URL/body sizes, the body budget and the in-flight cap, API keys on the small routes,
and ``wattserve serve`` on a busy port. Fast versions of benchmarks/hostile_clients.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from tests.test_serve_support import config, gateway, mock_replicas

P = b"POST /v1/completions HTTP/1.1\r\nHost: t\r\n"
TE = P + b"Transfer-Encoding: chunked\r\n\r\n"
# each is rejected with a 400 and the connection closed (the GET after it is never answered)
VARIANTS = {
    "cl_and_te": P + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_cl_differ": P + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "cl_list": P + b"Content-Length: 4, 5\r\n\r\nabcde",
    "cl_plus": P + b"Content-Length: +4\r\n\r\nabcd",
    "cl_negative": P + b"Content-Length: -1\r\n\r\n",
    "cl_hex": P + b"Content-Length: 0x4\r\n\r\nabcd",
    "cl_space_inside": P + b"Content-Length: 1 2\r\n\r\n" + b"a" * 12,
    "cl_overflow": P + b"Content-Length: 99999999999999999999999\r\n\r\n",
    "cl_space_before_colon": P + b"Content-Length : 4\r\n\r\nabcd",
    "te_xchunked": P + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_chunked_identity": P + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te_identity": P + b"Transfer-Encoding: identity\r\n\r\n",
    "te_gzip_chunked": P + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_twice": P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_quoted": P + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n',
    "te_trailing_comma": P + b"Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
    "te_space_before_colon": P + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te_obs_fold": P + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "te_vertical_tab": P + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    "te_on_http10": b"POST /v1/completions HTTP/1.0\r\nHost: t\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk_size_not_hex": TE + b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": TE + b"ffffffffffffffffff1\r\na\r\n0\r\n\r\n",
    "chunk_size_negative": TE + b"-3\r\nabc\r\n0\r\n\r\n",
    "chunk_without_crlf": TE + b"3\r\nabcX0\r\n\r\n",
    "chunk_longer_than_size": TE + b"2\r\nabcdef\r\n0\r\n\r\n",
    "header_obs_fold": P + b"X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "bare_cr_in_header": P + b"X-A: a\rContent-Length: 4\r\n\r\nabcd",
    "nul_in_header": P + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "space_in_header_name": P + b"X A: b\r\nContent-Length: 0\r\n\r\n",
    "no_host": b"POST /v1/completions HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    "two_hosts": P + b"Host: u\r\nContent-Length: 0\r\n\r\n",
    "bad_method": b"PO(ST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    "bad_version": b"POST /v1/completions HTTP/1.x\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    "double_space_request_line": b"POST  /v1/completions HTTP/1.1\r\nHost: t\r\n\r\n",
}


def _exchange(port: int, data: bytes, timeout_s: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data``, read until the server closes (True) or ``timeout_s`` passes (False)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            return out, False
        except ConnectionResetError:
            pass
        return out, True


@pytest.fixture(scope="module")
def gw():
    with (
        mock_replicas(1, process=False) as reps,
        gateway(
            config(
                [reps[0].url],
                limits={"header_read_timeout_s": 1.0, "body_read_timeout_s": 1.0},
            )
        ) as srv,
    ):
        yield srv


def test_there_are_at_least_27_framing_variants():
    assert len(VARIANTS) >= 27


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_framing_and_smuggling_variants_get_400_and_close(gw, name):
    out, closed = _exchange(gw.port, VARIANTS[name] + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert closed and out.count(b"HTTP/1.1 ") == 1  # the request behind it was never read


def test_hosts_outside_allowed_hosts_are_refused_and_listed_ones_served():
    limits = {"allowed_hosts": ["api.example", "localhost"]}
    with (
        mock_replicas(1, process=False) as reps,
        gateway(config([reps[0].url], limits=limits)) as srv,
    ):
        assert httpx.get(srv.url + "/health", headers={"host": "evil.example"}).status_code == 400
        assert (
            httpx.get(srv.url + "/health", headers={"host": "API.example:8000"}).status_code == 200
        )
        assert httpx.get(srv.url + "/health", headers={"host": "localhost"}).status_code == 200


def test_a_trailing_slash_never_redirects_to_the_clients_host(gw):
    out, _ = _exchange(
        gw.port, b"GET /v1/models/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    head = out.partition(b"\r\n\r\n")[0].lower()
    assert out.startswith(b"HTTP/1.1 404") and b"location:" not in head


def test_slow_drip_heads_are_closed_by_the_header_timeout_while_probes_are_answered(gw):
    conns = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(40)]
    closed_at: dict[int, float] = {}
    t0 = time.monotonic()

    def drip() -> None:
        head = P + b"X-Slow: " + b"a" * 100
        for i in range(len(head)):  # one byte per 0.2 s per connection, 8 s at most
            if len(closed_at) == len(conns) or time.monotonic() - t0 > 8:
                return
            for k, c in enumerate(conns):
                if k in closed_at:
                    continue
                try:
                    c.sendall(head[i : i + 1])
                    c.settimeout(0.001)
                    if c.recv(100) == b"":
                        closed_at[k] = time.monotonic() - t0
                except TimeoutError:
                    pass
                except OSError:
                    closed_at[k] = time.monotonic() - t0
            time.sleep(0.2)

    th = threading.Thread(target=drip)
    th.start()
    probes = []
    while th.is_alive() and len(probes) < 12:
        r = httpx.post(
            gw.url + "/v1/completions",
            json={"model": "tiny", "prompt": f"probe {len(probes)}"},
            timeout=5,
        )
        probes.append(r.status_code)
        time.sleep(0.25)
    th.join(10)
    for c in conns:
        c.close()
    assert probes and all(s == 200 for s in probes)
    assert len(closed_at) == len(conns)  # every slow head was cut off ...
    assert 0.8 < min(closed_at.values()) and max(closed_at.values()) < 5  # ... at about 1 s


def test_an_idle_keep_alive_connection_cannot_be_kept_open_by_dripping_bytes(gw):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        s.settimeout(0.2)
        got, closed = b"", False
        while time.monotonic() - t0 < 6 and not closed:
            try:
                chunk = s.recv(65536)
                closed = chunk == b""
                got += chunk
            except TimeoutError:
                s.sendall(b"G")  # the next request's head, one byte at a time
    assert got.startswith(b"HTTP/1.1 200") and closed and time.monotonic() - t0 < 4


def test_a_giant_header_is_refused_with_431_after_a_few_mb(gw):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(P + b"X-Big: ")
        sent, answer = 0, b""
        s.settimeout(0.05)
        while sent < 64 * 2**20 and not answer:
            try:
                sent += s.send(b"a" * 2**16)
                answer = s.recv(100)
            except TimeoutError:
                continue
            except OSError:
                break
        s.settimeout(5)
        answer = answer or s.recv(100)
    assert answer.startswith(b"HTTP/1.1 431") and sent < 8 * 2**20


def test_a_long_url_is_414_and_a_giant_one_431(gw):
    out, closed = _exchange(
        gw.port, b"GET /v1/models?q=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 414") and closed
    out, closed = _exchange(gw.port, b"GET /?q=" + b"a" * 300_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431") and closed


def test_a_dripped_body_is_answered_408_and_bodies_past_the_budget_503():
    limits = {
        "body_read_timeout_s": 1.0,
        "max_body_bytes": 100_000,
        "max_buffered_body_bytes": 150_000,
    }
    head = P + b"Content-Type: application/json\r\nContent-Length: 99000\r\n\r\n"
    with (
        mock_replicas(1, process=False) as reps,
        gateway(config([reps[0].url], limits=limits)) as srv,
    ):
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        slow.sendall(head + b"a" * 50_000)  # half a body, the rest never comes
        time.sleep(0.3)
        out, closed = _exchange(srv.port, head + b"a" * 99_000)  # over the budget: refused
        assert out.startswith(b"HTTP/1.1 503") and closed
        assert b"retry-after: 1" in out.lower()
        r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "small"})
        assert r.status_code == 200  # a small body still fits in the budget
        t0 = time.monotonic()
        slow.settimeout(10)
        data = slow.recv(65536)
        assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 5
        slow.close()
        assert srv.app.buffered == 0 and srv.app.in_flight == 0


def test_requests_past_the_in_flight_cap_are_shed_with_retry_after():
    with (
        mock_replicas(1, process=False, output_len=40, token_delay_ms=25) as reps,
        gateway(config([reps[0].url], limits={"max_in_flight": 1})) as srv,
    ):
        body = {"model": "tiny", "prompt": "long", "stream": True}
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=20) as r:
            chunks = r.iter_bytes()
            rest = next(chunks)
            shed = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x"})
            rest += b"".join(chunks)
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert rest.endswith(b"data: [DONE]\n\n")
        assert (
            httpx.post(
                srv.url + "/v1/completions", json={"model": "tiny", "prompt": "y"}
            ).status_code
            == 200
        )


@pytest.mark.parametrize("public", [False, True])
def test_with_keys_set_the_small_routes_need_one(tmp_path, public):
    keys = tmp_path / "keys"
    keys.write_text("sk-test-key-0001:team\n")
    auth = {"keys_env": None, "keys_file": str(keys), "public_probes": public}
    with mock_replicas(1, process=False) as reps, gateway(config([reps[0].url], auth=auth)) as srv:
        good = {"authorization": "Bearer sk-test-key-0001"}
        bad = {"authorization": "Bearer sk-wrong-key-000"}
        for path in ("/metrics", "/stats", "/ready", "/v1/models", "/health"):
            probe = path in ("/health", "/metrics")
            for headers in ({}, bad):
                r = httpx.get(srv.url + path, headers=headers)
                assert r.status_code == (200 if public and probe else 401), (path, headers)
                if r.status_code == 401:
                    assert "replica" not in r.text and r.json()["error"]["code"]
            assert httpx.get(srv.url + path, headers=good).status_code == 200, path
        assert httpx.get(srv.url + "/openapi.json").status_code == 200


def test_serve_on_a_busy_port_or_a_bad_port_says_so_in_one_line(tmp_path):
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("models:\n  - name: m\n    replicas: [{kind: mock}]\nauth: {keys_env: null}\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for args in (["--port", str(port)], ["--port", "99999"]):
            p = subprocess.run(
                [sys.executable, "-m", "wattserve", "serve", "-c", str(cfg), *args],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
            lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and ("cannot listen" in p.stderr or "--port" in p.stderr), (
                p.stderr
            )


async def test_granian_reports_a_busy_port_as_one_oserror():
    from wattserve.serve.config import LimitsConfig
    from wattserve.serve.server import GranianServer

    async def app(scope, receive, send):  # never called
        raise AssertionError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = GranianServer(app, "127.0.0.1", holder.getsockname()[1], 1.0, LimitsConfig())
        server.signals = False
        with pytest.raises(OSError) as err:
            await server.serve()
    assert "\n" not in str(err.value) and "in use" in str(err.value)
