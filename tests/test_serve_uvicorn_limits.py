"""``server: uvicorn``: the limits uvicorn has options for reach them, start-up warns about
the two it has none for, and the header read timeout gap shows beside granian on the wire."""

from __future__ import annotations

import logging
import socket
import time

from test_serve_support import config, gateway, mock_replicas
from wattserve.serve.server import UVICORN_GAPS

LIMITS = {"header_read_timeout_s": 0.5, "keep_alive_s": 3.0, "max_connections": 77}


def _closed_within(port: int, data: bytes, limit_s: float) -> bool:
    """Whether the gateway closes a connection that sent ``data`` and then nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as s:
        s.sendall(data)
        end = time.monotonic() + limit_s
        s.settimeout(0.1)
        while time.monotonic() < end:
            try:
                if not s.recv(65536):
                    return True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
    return False


def test_uvicorn_gets_the_limits_it_has_options_for_and_warns_about_the_rest(caplog):
    caplog.set_level(logging.WARNING, logger="wattserve.serve")
    with (
        mock_replicas(1, process=False) as reps,
        gateway(config([reps[0].url], server="uvicorn", limits=LIMITS)) as srv,
    ):
        uv = srv.server.config
        assert uv.timeout_keep_alive == 3.0 and uv.limit_concurrency == 77
        assert uv.h11_max_incomplete_event_size == 65536  # inert: uvicorn runs httptools
        assert uv.http == "httptools"
    gaps = [r for r in caplog.records if r.getMessage() == UVICORN_GAPS]
    assert len(gaps) == 1 and gaps[0].levelno == logging.WARNING


def test_granian_does_not_warn(caplog):
    caplog.set_level(logging.WARNING, logger="wattserve.serve")
    with mock_replicas(1, process=False) as reps, gateway(config([reps[0].url])):
        pass
    assert not any(r.getMessage() == UVICORN_GAPS for r in caplog.records)


def _status(port: int, data: bytes) -> int:
    """The status of the answer to ``data`` (a server may answer before reading all of it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return int(s.recv(65536).split(b" ", 2)[1])


def test_a_stalled_head_and_a_huge_header_beside_granian():
    head = b"GET /health HTTP/1.1\r\nHost: t\r\n"  # no blank line: the head never ends
    huge = head + b"X-big: " + b"a" * 200_000 + b"\r\n\r\n"
    held, status = {}, {}
    with mock_replicas(1, process=False) as reps:
        for server in ("granian", "uvicorn"):
            cfg = config([reps[0].url], server=server, limits=LIMITS)
            with gateway(cfg) as srv:
                held[server] = not _closed_within(srv.port, head, 2.0)
                status[server] = _status(srv.port, huge)
    assert held == {"granian": False, "uvicorn": True}
    assert status == {"granian": 431, "uvicorn": 200}
