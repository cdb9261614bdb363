"""Gateway HTTP behaviour: tenant isolation, API keys, OpenAI-style errors that
never carry a traceback, body limits, the OpenAPI schema, graceful shutdown with cache flush."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from test_serve_support import config, gateway, mock_replicas

KEYS = "key-alpha-0001:alpha,key-bravo-0002:bravo"
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "same prompt"}], "temperature": 0}


@pytest.fixture(scope="module")
def reps():
    with mock_replicas(2) as r:
        yield r


@pytest.fixture(scope="module")
def gw(reps, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("# tenants\nkey-alpha-0001:alpha\nkey-bravo-0002:bravo\n")
    with gateway(
        config(
            [r.url for r in reps],
            auth={"keys_file": str(keys), "keys_env": None},
            max_body_bytes=4096,
        )
    ) as srv:
        yield srv


def _post(gw, body, key="key-alpha-0001", path="/v1/chat/completions", **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=10, **kw)


def test_same_prompt_never_hits_across_tenants(gw):
    a1 = _post(gw, CHAT, "key-alpha-0001")
    a2 = _post(gw, CHAT, "key-alpha-0001")
    b1 = _post(gw, CHAT, "key-bravo-0002")
    b2 = _post(gw, CHAT, "key-bravo-0002")
    assert [r.headers["x-wattserve-cache"] for r in (a1, a2, b1, b2)] == [
        "miss",
        "hit",
        "miss",
        "hit",
    ]
    assert [r.json()["usage"]["cache_hit"] for r in (a1, a2, b1, b2)] == [False, True, False, True]
    stats = gw.service.cache.stats()
    assert stats["entries"] >= 2


def test_api_keys_are_required_and_checked(gw):
    for key in (None, "wrong-key-9999"):
        r = _post(gw, CHAT, key)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
    assert _post(gw, CHAT, "key-bravo-0002").status_code == 200


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (
            b'{"model": "ghost", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
        ),
        (b'{"model": "tiny", "messages": []}', 400, None),
        (
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
            400,
            None,
        ),
        (
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}',
            400,
            None,
        ),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 3}', 400, None),
        (
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            400,
            None,
        ),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, None),
    ],
)
def test_bad_requests_get_openai_style_errors(gw, body, status, code):
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        content=body,
        timeout=10,
        headers={"Authorization": "Bearer key-alpha-0001", "Content-Type": "application/json"},
    )
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code
    assert "Traceback" not in r.text


def test_body_limit_unknown_route_and_wrong_method(gw):
    big = {"model": "tiny", "prompt": "x" * 10_000}
    r = _post(gw, big, path="/v1/completions")
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = httpx.get(gw.url + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(gw.url + "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_upstream_errors_are_clean_and_do_not_take_replicas_out():
    with mock_replicas(2, process=False, fail_after=0) as reps:  # every answer is an HTTP 500
        with gateway(config([r.url for r in reps])) as gw:
            r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
            assert r.status_code == 502
            assert r.json()["error"]["type"] == "upstream_error" and "Traceback" not in r.text
            assert sum(r.requests_seen for r in reps) == 2  # tried once, retried once on the other
            # one bad answer is not a dead replica: both stay in the pool
            assert all(rep["healthy"] for rep in httpx.get(gw.url + "/ready").json()["replicas"])


def test_stream_broken_mid_way_ends_with_an_error_event():
    with mock_replicas(1, process=False, die_mid_stream=3) as reps:
        with gateway(config([reps[0].url])) as gw:
            r = httpx.post(
                gw.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
            )
            events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
            assert r.status_code == 200 and events[-1] == "[DONE]"
            err = json.loads(events[-2])["error"]
            assert err["code"] == "stream_broken" and "mid-stream" in err["message"]
            assert sum(" tok" in e for e in events) == 3


def test_openapi_schema_is_valid(gw):
    from openapi_spec_validator import validate

    schema = httpx.get(gw.url + "/openapi.json").json()
    validate(schema)
    assert {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/health",
        "/ready",
        "/metrics",
    } <= set(schema["paths"])
    assert "ChatCompletionRequest" in schema["components"]["schemas"]


def test_health_ready_metrics(gw):
    key = {"Authorization": "Bearer key-alpha-0001"}  # with keys set, every route needs one
    assert httpx.get(gw.url + "/health").status_code == 401
    assert httpx.get(gw.url + "/health", headers=key).json() == {"status": "ok"}
    assert httpx.get(gw.url + "/ready", headers=key).json()["ready"] is True
    m = httpx.get(gw.url + "/metrics", headers=key).text
    for name in (
        "wattserve_requests_total",
        "wattserve_ttft_seconds_bucket",
        "wattserve_e2e_seconds_bucket",
        "wattserve_tokens_total",
        "wattserve_cache_hits_total",
        "wattserve_replica_healthy",
        "wattserve_queue_depth",
        "wattserve_energy_joules_total",
    ):
        assert name in m, name
    assert "active_time" in m  # the attribution method is stated in the help text


def test_graceful_shutdown_finishes_in_flight_and_flushes_cache(tmp_path):
    db = tmp_path / "cache.sqlite"
    with mock_replicas(1, token_delay_ms=100) as reps:
        cfg = config([reps[0].url], cache={"persist_path": str(db)})
        gw = gateway(cfg)
        srv = gw.__enter__()
        got: dict = {}

        def stream() -> None:
            with httpx.stream(
                "POST",
                srv.url + "/v1/completions",
                timeout=20,
                json={"model": "tiny", "prompt": "slow", "stream": True, "temperature": 0},
            ) as r:
                got["body"] = b"".join(r.iter_bytes())

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(0.3)  # the stream is under way (0.8 s in all)
        t0 = time.monotonic()
        gw.__exit__(None, None, None)  # stop: refuse new work, finish this one, flush the cache
        t.join(10)
        assert got["body"].endswith(b"data: [DONE]\n\n") and got["body"].count(b" tok") == 8
        assert time.monotonic() - t0 < cfg.grace_s + 2
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/health", timeout=2)
        # the persisted cache answers after a restart
        with gateway(cfg) as srv2:
            r = httpx.post(
                srv2.url + "/v1/completions",
                json={"model": "tiny", "prompt": "slow", "temperature": 0},
            )
            assert (
                r.headers["x-wattserve-cache"] == "hit"
                and r.json()["choices"][0]["text"] == " tok" * 8
            )


def test_fastapi_routes_serve_the_same_answers(reps):
    with gateway(config([r.url for r in reps], fast_path=False)) as gw:
        r = httpx.post(
            gw.url + "/v1/chat/completions", json={**CHAT, "temperature": 0.5}, timeout=10
        )
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == " tok" * 8
        assert r.headers["x-wattserve-replica"].startswith("tiny/url-")
        s = httpx.post(
            gw.url + "/v1/completions",
            json={"model": "tiny", "prompt": "p", "stream": True},
            timeout=10,
        )
        assert s.text.endswith("data: [DONE]\n\n") and s.text.count(" tok") == 8
        bad = httpx.post(gw.url + "/v1/completions", content=b"{", timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


def test_cli_help_and_one_line_errors(tmp_path, capsys):
    from wattserve.cli import main

    for cmd in (["serve", "--help"], ["demo-gateway", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0 and "--config" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{name: x, replicas: [{kind: url}]}]\n")
    for path in (bad, tmp_path / "missing.yaml"):
        with pytest.raises(SystemExit) as e:
            main(["serve", "--config", str(path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and "Traceback" not in err
