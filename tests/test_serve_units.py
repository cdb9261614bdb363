"""Gateway parts without sockets: energy attribution, balancers, config, auth, the pipeline
over an in-process engine (streaming, non-streaming, mid-stream failure), the launcher."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest

from wattserve.engines.base import EngineBase
from wattserve.errors import ConfigError
from wattserve.openai.answers import APIError
from wattserve.serve.auth import ApiKeys
from wattserve.serve.config import config_from_dict, load_config
from wattserve.serve.energy import EnergyAccountant
from wattserve.serve.pool import EnergyAware, LeastOutstanding, RoundRobin
from wattserve.types import Chunk, EnergyReading, Request, Usage


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeMeter:
    """A device drawing a constant power: joules = watts x time."""

    def __init__(self, clock: FakeClock, watts: float) -> None:
        self.clock, self.watts = clock, watts

    def read(self) -> EnergyReading:
        return EnergyReading(self.clock.t, {"cpu": self.watts * self.clock.t}, {"cpu": "modeled"})


def test_energy_split_by_active_time_adds_up_to_the_meter():
    clock = FakeClock()
    acc = EnergyAccountant(FakeMeter(clock, 10.0), clock=clock)
    acc.begin("cpu")  # creates the device at t=0
    acc.end("cpu", 0.0)
    acc.tick()
    a = acc.begin("cpu")  # A: 0..2 s
    clock.t = 1.0
    b = acc.begin("cpu")  # B: 1..3 s
    clock.t = 2.0
    acc.tick()  # interval 0..2 at 10 W: A alone 0..1, A and B 1..2 (5 J each)
    ja = acc.end("cpu", a)
    clock.t = 3.0
    acc.tick()  # interval 2..3: 10 J, B alone
    jb = acc.end("cpu", b)
    clock.t = 4.0
    acc.tick()  # idle second
    assert ja == pytest.approx(10 + 5)
    assert jb == pytest.approx(5 + 10)
    s = acc.summary()["cpu"]
    assert s["metered_j"] == pytest.approx(40.0)
    assert s["charged_j"] + s["idle_j"] == pytest.approx(s["metered_j"])
    assert s["idle_j"] == pytest.approx(10.0)


def test_a_lone_short_request_pays_average_power_times_its_duration():
    clock = FakeClock()
    acc = EnergyAccountant(FakeMeter(clock, 10.0), clock=clock, min_read_s=0.0)
    acc.end("cpu", acc.begin("cpu"))
    clock.t = 0.5
    t = acc.begin("cpu")
    clock.t = 0.51  # 10 ms in flight, inside a 0.51 s meter interval
    assert acc.end("cpu", t) == pytest.approx(10.0 * 0.01)
    s = acc.summary()["cpu"]
    assert s["idle_j"] == pytest.approx(5.0) and s["charged_j"] == pytest.approx(0.1)


def test_open_interval_is_estimated_at_the_last_rate():
    clock = FakeClock()
    acc = EnergyAccountant(
        FakeMeter(clock, 6.0), clock=clock, min_read_s=10.0
    )  # no read at the end
    t = acc.begin("cpu")
    acc.tick()
    clock.t = 1.0
    acc.tick()  # 6 J in 1 s: 6 W
    clock.t = 1.5  # ends inside the open interval
    assert acc.end("cpu", t) == pytest.approx(9.0)
    assert EnergyAccountant(None).end("cpu", acc.begin("cpu")) is None


def test_request_end_reads_the_meter_so_its_charge_is_metered():
    clock = FakeClock()
    meter = FakeMeter(clock, 6.0)
    acc = EnergyAccountant(meter, clock=clock, min_read_s=0.05)
    acc.tick()
    t = acc.begin("cpu")
    clock.t = 1.0
    acc.tick()  # rate 6 J/s so far
    meter.watts = 0.0  # the device went idle-free: 6 J/s until now, then nothing more
    clock.t = 1.5
    meter.read = lambda: EnergyReading(
        clock.t, {"cpu": 6.0 + 2.0}, {"cpu": "modeled"}
    )  # 2 J in the last 0.5 s
    assert acc.end("cpu", t) == pytest.approx(8.0)  # metered, not 6 + 3 estimated


class R:
    def __init__(self, name: str, outstanding: int = 0, slots: int = 4, model: str = "m") -> None:
        self.name, self.outstanding, self.slots, self.model = name, outstanding, slots, model


REQ = Request(id="r", model="m", prompt="x" * 400, max_tokens=100)


def test_round_robin_and_least_outstanding():
    reps = [R("a"), R("b"), R("c")]
    rr = RoundRobin()
    assert sorted(rr.pick(REQ, reps) for _ in range(3)) == [0, 1, 2]
    lo = LeastOutstanding()
    reps[0].outstanding, reps[1].outstanding, reps[2].outstanding = 3, 1, 2
    assert lo.pick(REQ, reps) == 1
    reps[1].outstanding = 3  # ties share the load
    picks = {lo.pick(REQ, [R("a", 1), R("b", 1)]) for _ in range(4)}
    assert picks == {0, 1}


def test_energy_aware_prefers_cheap_replica_until_it_queues():
    cost = {"gpu": 2.0, "cpu": 5.0}  # J per request alone
    bal = EnergyAware(lambda rep, i, o: cost[rep.name])
    gpu, cpu = R("gpu", 0, slots=4), R("cpu", 0, slots=4)
    assert bal.pick(REQ, [cpu, gpu]) == 1
    gpu.outstanding = 3  # still within its slots: batching is free
    assert bal.pick(REQ, [cpu, gpu]) == 1
    gpu.outstanding = 12  # (12+1)/4 x 2 J = 6.5 J > 5 J on the idle CPU replica
    assert bal.pick(REQ, [cpu, gpu]) == 0
    assert bal.predict(REQ, gpu) == pytest.approx(6.5)


def test_config_yaml_toml_and_errors(tmp_path):
    y = tmp_path / "s.yaml"
    y.write_text(
        textwrap.dedent("""
        port: 9000
        balancer: energy_aware
        models:
          - name: small
            replicas: [{kind: url, url: "http://127.0.0.1:1/v1", copies: 2}]
        cache: {policy: lec, capacity_entries: 50}
    """)
    )
    cfg = load_config(y)
    assert cfg.port == 9000 and cfg.cache.policy == "lec" and cfg.models[0].replicas[0].copies == 2
    t = tmp_path / "s.toml"
    t.write_text('[[models]]\nname = "small"\n[[models.replicas]]\nkind = "mock"\n')
    assert load_config(t).models[0].replicas[0].kind == "mock"
    with pytest.raises(ConfigError, match="url"):
        config_from_dict({"models": [{"name": "x", "replicas": [{"kind": "url"}]}]})
    with pytest.raises(ConfigError, match="balancer"):
        config_from_dict(
            {"models": [{"name": "x", "replicas": [{"kind": "mock"}]}], "balancer": "random"}
        )
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_api_keys_from_env_and_constant_time_lookup(monkeypatch):
    monkeypatch.setenv("WS_TEST_KEYS", "secret-key-1:teamA, other-key-22")
    keys = ApiKeys.load(keys_env="WS_TEST_KEYS")
    assert keys.required
    assert keys.tenant("Bearer secret-key-1") == "teamA"
    assert keys.tenant("Bearer other-key-22").startswith("key-")  # own tenant, key not revealed
    with pytest.raises(APIError) as e:
        keys.tenant("Bearer nope-nope-nope")
    assert e.value.status == 401
    assert ApiKeys.load(keys_env="WS_UNSET_VAR").tenant(None) == "default"
    with pytest.raises(ConfigError):
        ApiKeys([], required=True)
    monkeypatch.setenv("WS_TEST_SHORT", "short")
    with pytest.raises(ConfigError, match="at least 8"):
        ApiKeys.load(keys_env="WS_TEST_SHORT")


class FakeEngine(EngineBase):
    """An in-process engine: yields words; ``fail_after`` raises mid-stream."""

    name = "fake"

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.seen: list[Request] = []

    async def stream(self, request: Request):
        self.seen.append(request)
        for i in range(4):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("engine crashed")
            await asyncio.sleep(0)
            yield Chunk(text=f"t{i} ", t_s=0.0, tokens=1)
        yield Chunk(text="", t_s=0.0, finish_reason="stop", usage=Usage(3, 4))


def _gateway(engine, cache=None):
    from wattserve.serve.metrics import GatewayMetrics
    from wattserve.serve.pipeline import Gateway
    from wattserve.serve.pool import ReplicaPool
    from wattserve.serve.replica import EngineReplica

    pool = ReplicaPool(
        [EngineReplica("m/engine-0", "m", engine, engine_model="m-real")], LeastOutstanding()
    )
    return Gateway(pool, cache=cache, metrics=GatewayMetrics(), accountant=None)


async def _drain(reply) -> bytes:
    return b"".join([c async for c in reply.stream])


async def test_pipeline_over_an_engine_streams_and_caches():
    from wattserve.cache import ResponseCache

    engine = FakeEngine()
    gw = _gateway(engine, ResponseCache("lru", capacity_entries=10))
    body = (
        b'{"model": "m", "prompt": "hi", "stream": true, "temperature": 0, '
        b'"stream_options": {"include_usage": true}}'
    )
    reply = await gw.handle("completions", body)
    assert reply.status == 200 and dict(reply.headers)["x-wattserve-replica"] == "m/engine-0"
    out = await _drain(reply)
    assert out.count(b'"text":"t') == 4 and out.endswith(b"data: [DONE]\n\n")
    assert b'"completion_tokens":4' in out and b'"cache_hit":false' in out
    assert engine.seen[0].model == "m-real"  # the engine's own model name is sent
    hit = await gw.handle("completions", body.replace(b'"stream": true', b'"stream": false'))
    assert dict(hit.headers)["x-wattserve-cache"] == "hit" and b"t0 t1 t2 t3 " in hit.body
    assert len(engine.seen) == 1


async def test_engine_failure_mid_stream_ends_with_an_error_event():
    gw = _gateway(FakeEngine(fail_after=2))
    reply = await gw.handle(
        "chat", b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}'
    )
    out = await _drain(reply)
    assert b"t1" in out and b'"code":"stream_broken"' in out and out.endswith(b"data: [DONE]\n\n")
    assert gw.in_flight == 0
    # failure before the first byte on the only replica -> clean 502, nothing hangs
    gw = _gateway(FakeEngine(fail_after=0))
    reply = await gw.handle(
        "chat", b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert reply.status == 502 and b"upstream_error" in reply.body


async def test_launcher_starts_waits_and_stops_a_command_replica():
    from wattserve.engines.launcher import Launcher
    from wattserve.serve.config import ReplicaConfig

    spec = ReplicaConfig(
        kind="command",
        command=[sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
        ready_path="/",
        ready_timeout_s=20,
    )
    launcher = Launcher()
    items = await launcher.launch("m", spec)
    assert items[0].url.endswith("/v1") and items[0].process.poll() is None
    proc = items[0].process
    await launcher.stop(grace_s=5)
    assert proc.poll() is not None
    bad = ReplicaConfig(
        kind="command", command=[sys.executable, "-c", "raise SystemExit(3)"], ready_timeout_s=5
    )
    from wattserve.errors import EngineUnavailable

    with pytest.raises(EngineUnavailable, match="exited with code 3"):
        await Launcher().launch("m", bad)


async def test_multiplexer_routes_auto_and_router_policy_names():
    import numpy as np

    from wattserve.route import PriorScorer, Router
    from wattserve.serve.metrics import GatewayMetrics
    from wattserve.serve.pipeline import Gateway
    from wattserve.serve.pool import ReplicaPool
    from wattserve.serve.replica import EngineReplica

    scorer = PriorScorer().fit(
        ["a", "b"], np.array([[1, 1], [0, 1]]), ["small", "big"]
    )  # quality 0.5, 1.0
    router = Router(
        ["small", "big"], {"small": 1.0, "big": 10.0}, scorer, threshold=0.4, name="prior"
    )
    engines = {"small": FakeEngine(), "big": FakeEngine()}
    pool = ReplicaPool(
        [EngineReplica(f"{m}/0", m, e) for m, e in engines.items()], LeastOutstanding()
    )
    gw = Gateway(pool, router=router, metrics=GatewayMetrics())

    async def served_by(model: str) -> tuple[int, str]:
        body = f'{{"model": "{model}", "prompt": "hi", "temperature": 0.5}}'.encode()
        reply = await gw.handle("completions", body)
        return reply.status, dict(reply.headers).get("x-wattserve-model", "")

    assert await served_by("auto") == (200, "small")  # cheapest model above 0.4
    assert await served_by("router-prior-0.9") == (200, "big")  # only big reaches 0.9
    assert await served_by("router-prior") == (200, "small")
    assert (await served_by("router-other-0.5"))[0] == 404
    assert (await served_by("router-prior-7"))[0] == 400  # threshold outside [0, 1]
    assert len(engines["small"].seen) == 2 and len(engines["big"].seen) == 1
    assert (
        await _gateway(FakeEngine()).handle("completions", b'{"model": "auto", "prompt": "x"}')
    ).status == 404


async def test_identical_concurrent_requests_run_once():
    from wattserve.cache import ResponseCache

    engine = FakeEngine()
    gw = _gateway(engine, ResponseCache("lru", capacity_entries=10))
    body = b'{"model": "m", "prompt": "same", "temperature": 0}'
    replies = await asyncio.gather(*(gw.handle("completions", body) for _ in range(4)))
    assert len(engine.seen) == 1  # the twins waited for the first answer instead of recomputing it
    assert sorted(dict(r.headers)["x-wattserve-cache"] for r in replies) == [
        "hit",
        "hit",
        "hit",
        "miss",
    ]
    assert len({r.body.split(b'"usage"')[0].split(b'"choices"')[1] for r in replies}) == 1
    assert not gw.books.flights


def test_energy_aware_balancer_from_a_fits_file(tmp_path):
    import json

    from wattserve.route.costs import fitted_joules
    from wattserve.serve.service import load_fits
    from wattserve.types import ModelFit

    fit = ModelFit(
        model="small",
        device="cpu",
        quantity="energy_j",
        form="linear-interaction",
        params=("a0_in", "a1_out", "a2_in_out"),
        coefficients=(0.01, 0.1, 0.001),
    )
    path = tmp_path / "fits.json"
    path.write_text(json.dumps({"fits": [fit.to_dict()]}))
    cfg = config_from_dict(
        {
            "models": [{"name": "small", "fit": str(path), "replicas": [{"kind": "mock"}]}],
            "balancer": "energy_aware",
        }
    )
    fits = load_fits(cfg)
    energy = fitted_joules(fits, {"other": 0.5})
    from wattserve.fit import predict

    assert energy("small", 100, 10) == pytest.approx(0.01 * 100 + 0.1 * 10 + 0.001 * 1000)
    assert float(predict(fit, 100, 10, warn=False)) == pytest.approx(3.0)
    assert energy("other", 100, 10) == pytest.approx(55.0)
    assert energy("unknown", 1, 1) is None
    bad = config_from_dict(
        {
            "models": [
                {"name": "big", "fit": str(path), "replicas": [{"kind": "mock"}]},
                {"name": "tiny", "fit": str(path), "replicas": [{"kind": "mock"}]},
            ]
        }
    )
    assert set(load_fits(bad)) == {"big", "tiny"}  # a file with one energy fit serves any model


async def test_a_stream_the_client_abandons_is_not_cached():
    from wattserve.cache import ResponseCache

    engine = FakeEngine()
    cache = ResponseCache("lru", capacity_entries=10)
    gw = _gateway(engine, cache)
    body = b'{"model": "m", "prompt": "cut", "stream": true, "temperature": 0}'
    reply = await gw.handle("completions", body)
    agen = reply.stream
    await agen.__anext__()  # the client reads one event and goes away
    await agen.aclose()
    assert len(cache) == 0 and gw.in_flight == 0 and not gw.books.flights
    again = await gw.handle("completions", body)
    assert dict(again.headers)["x-wattserve-cache"] == "miss"
    await _drain(again)
    assert len(cache) == 1


async def test_an_abandoned_http_stream_is_not_cached_and_closes_upstream():
    from wattserve.cache import ResponseCache
    from wattserve.engines.mock_server import MockServer
    from wattserve.serve.pipeline import Gateway
    from wattserve.serve.pool import ReplicaPool
    from wattserve.serve.replica import HttpReplica

    with MockServer(output_len=64, token_delay_ms=5) as mock:
        pool = ReplicaPool([HttpReplica("m/url-0", "m", mock.url)], LeastOutstanding())
        await pool.start(health_loop=False)
        try:
            cache = ResponseCache("lru", capacity_entries=10)
            gw = Gateway(pool, cache=cache)
            body = b'{"model": "m", "prompt": "cut", "stream": true, "temperature": 0}'
            reply = await gw.handle("completions", body)
            first = await reply.stream.__anext__()
            assert b" tok" in first
            await reply.stream.aclose()
            assert len(cache) == 0 and gw.in_flight == 0 and pool.replicas[0].outstanding == 0
            full = await gw.handle("completions", body)
            out = await _drain(full)
            assert out.count(b" tok") == 64 and len(cache) == 1
        finally:
            await pool.aclose()
