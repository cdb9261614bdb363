"""The gateway on Ray Serve (``wattserve.serve.ray_backend``): a local 2-CPU Ray cluster,
2 ingress replicas sharing a real ``redis-server`` cache, one engine deployment of 2
simulated engines metered by a replay meter (a constant 10 W). Started once for the module,
stopped at its end; skipped with a reason only when Ray cannot start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'wattserve[ray]'")
openai = pytest.importorskip("openai")

from redis_support import redis_server  # noqa: E402
from wattserve.engines.launcher import free_port  # noqa: E402
from wattserve.errors import ConfigError  # noqa: E402
from wattserve.serve import ray_backend  # noqa: E402
from wattserve.serve.ray_config import split_config  # noqa: E402

pytestmark = pytest.mark.timeout(600)
ENGINE = "engine-sim-0"
WATTS = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("ray")
    trace = work / "power.csv"  # cumulative joules of a constant 10 W for a day
    trace.write_text(f"t_s,cpu\n0,0\n86400,{WATTS * 86400}\n")
    port = free_port()
    with redis_server(work) as url:
        doc = {
            "host": "127.0.0.1",
            "port": port,
            "models": [
                {
                    "name": "sim",
                    "replicas": [{"kind": "local", "backend": "simulated", "copies": 2}],
                }
            ],
            "cache": {"store": "redis", "url": url, "prefix": f"ws-ray-{port}:"},
            "energy": {"meter": f"replay:{trace}", "interval_s": 0.5},
            "health": {"interval_s": 0.5, "timeout_s": 2.0},
            "timeouts": {"first_token_s": 10.0, "total_s": 20.0},
            "ray": {
                "num_cpus": 2,
                "ingress": {"num_replicas": 2, "num_cpus": 0.25},
                "engines": {"sim": {"num_cpus": 0.25}},
            },
        }
        cfg, rc = split_config(doc)
        try:
            ray_backend.start_cluster(cfg, rc)
        except Exception as exc:  # noqa: BLE001 - any failure to start: the reason is the skip
            pytest.skip(f"Ray cannot start here: {type(exc).__name__}: {exc}")
        try:
            ray_backend.run(cfg, rc)
            yield {"base": f"http://127.0.0.1:{port}/v1", "rc": rc, "cfg": cfg}
        finally:
            ray_backend.shutdown(rc)


def _client(base: str, timeout: float = 30.0) -> Any:
    return openai.AsyncOpenAI(base_url=base, api_key="none", timeout=timeout, max_retries=0)


async def _ask(client: Any, prompt: str, stream: bool) -> tuple[str, dict[str, Any], dict]:
    """(text, usage as a dict, response headers) of one chat request."""
    msgs = [{"role": "user", "content": prompt}]
    if not stream:
        raw = await client.chat.completions.with_raw_response.create(
            model="sim", messages=msgs, max_tokens=4, temperature=0
        )
        resp = raw.parse()
        return resp.choices[0].message.content, resp.usage.model_dump(), dict(raw.headers)
    parts: list[str] = []
    usage: dict[str, Any] = {}
    async with client.chat.completions.with_streaming_response.create(
        model="sim",
        messages=msgs,
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        headers = dict(raw.headers)
        async for chunk in await raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
    return "".join(parts), usage, headers


async def _load(base: str, prompts: list[str], concurrency: int) -> list[Any]:
    """Every prompt once, streaming every other one; an exception in place of a failed one."""
    client = _client(base)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, p: str) -> Any:
        async with sem:
            return await asyncio.wait_for(_ask(client, p, stream=i % 2 == 0), 60)

    try:
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    finally:
        await client.close()


def test_200_requests_two_ingress_two_engines_and_a_shared_cache(cluster: dict) -> None:
    base = cluster["base"]
    prompts = [f"request {i} of the scale-out test" for i in range(200)]
    t0 = time.perf_counter()
    results = asyncio.run(_load(base, prompts, concurrency=8))
    assert time.perf_counter() - t0 < 300
    assert len(results) == 200
    for text, usage, headers in results:
        assert text.strip(), "an empty answer"
        assert usage["completion_tokens"] == 4
        assert headers["x-wattserve-cache"] == "miss"
    ingress = {h["x-wattserve-ingress"] for _, _, h in results}
    assert len(ingress) == 2, f"both ingress replicas answer (saw {ingress})"
    engines = ray_backend.cluster_totals(cluster["rc"], ENGINE, 2)
    assert len(engines) == 2 and all(t["requests"] > 0 for t in engines.values())

    async def repeats() -> tuple[dict, dict | None]:
        client = _client(base)
        try:
            first = await _ask(client, "the repeated prompt", stream=False)
            await asyncio.sleep(0.2)  # the Redis write of the first answer lands
            # Ray's proxy picks the ingress replica by (cached) queue lengths, so one at a time
            # may all go to the same one: send four at once until the other one answers
            for _ in range(10):
                batch = await asyncio.gather(
                    *(_ask(client, "the repeated prompt", stream=i % 2 == 1) for i in range(4))
                )
                for again in batch:
                    if again[2]["x-wattserve-ingress"] != first[2]["x-wattserve-ingress"]:
                        return first[2], again[2]
            return first[2], None
        finally:
            await client.close()

    first, other = asyncio.run(repeats())
    assert first["x-wattserve-cache"] == "miss"
    assert other is not None, "the other ingress replica never answered in 40 tries"
    assert other["x-wattserve-cache"] == "hit"  # stored by one ingress, found by the other


def test_request_joules_add_up_to_the_engines_metered_joules(cluster: dict) -> None:
    rc = cluster["rc"]
    before = ray_backend.cluster_totals(rc, ENGINE, 2)
    assert len(before) == 2
    prompts = [f"energy prompt {i}" for i in range(40)]
    results = asyncio.run(_load(cluster["base"], prompts, concurrency=4))
    after = ray_backend.cluster_totals(rc, ENGINE, 2)
    assert set(after) == set(before)
    usage = [u for _, u, _ in results]
    assert all(u["energy_source"] == "replay" and u["energy_device"] == "cpu" for u in usage)
    assert {u["energy_node"] for u in usage} == {t["node"] for t in after.values()}
    per_request = sum(u["energy_j"] for u in usage)
    charged = sum(after[r]["charged_j"] - before[r]["charged_j"] for r in after)
    busy = sum(
        (after[r]["metered_j"] - after[r]["idle_j"])
        - (before[r]["metered_j"] - before[r]["idle_j"])
        for r in after
    )
    assert per_request > 0
    assert per_request == pytest.approx(charged, rel=1e-9)  # what the engines charged, all of it
    assert per_request == pytest.approx(busy, rel=0.1)  # the metered joules while busy
    # a constant 10 W: the joules are 10 W times each engine's busy seconds, at most its wall time
    assert busy <= WATTS * 2 * 60


def test_killing_an_engine_replica_fails_cleanly_and_ray_replaces_it(cluster: dict) -> None:
    import ray
    from ray import serve

    rc, base = cluster["rc"], cluster["base"]
    old = set(ray_backend.cluster_totals(rc, ENGINE, 2))
    assert len(old) == 2
    victim = next(iter(old))
    name = next(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and a["name"].endswith(f"#{victim}")
    )
    actor = ray.get_actor(name, namespace="serve")

    async def load_with_a_kill() -> list[Any]:
        client = _client(base, timeout=25.0)
        sem = asyncio.Semaphore(4)

        async def one(i: int) -> Any:
            async with sem:
                t = time.perf_counter()
                try:
                    await asyncio.wait_for(_ask(client, f"kill load {i}", i % 2 == 0), 30)
                    return ("ok", time.perf_counter() - t)
                except openai.APIError as exc:  # an OpenAI-style error the SDK parsed
                    return ("error", type(exc).__name__)

        async def killer() -> None:
            await asyncio.sleep(0.5)
            ray.kill(actor, no_restart=True)

        try:
            kill = asyncio.create_task(killer())
            out = await asyncio.gather(*(one(i) for i in range(40)))
            await kill
            return list(out)
        finally:
            await client.close()

    results = asyncio.run(load_with_a_kill())  # a hang would be a TimeoutError raised here
    assert len(results) == 40
    assert sum(1 for kind, _ in results if kind == "ok") >= 20
    deadline = time.monotonic() + 120
    fresh: dict[str, Any] = {}
    rounds = 0
    while time.monotonic() < deadline:
        status = serve.status().applications[rc.app_name].deployments[ENGINE]
        running = status.replica_states.get("RUNNING", 0)
        if running == 2:
            rounds += 1  # fresh prompts each round: a cache hit would not reach an engine
            asyncio.run(_load(base, [f"after kill {rounds}.{i}" for i in range(12)], 4))
            seen = ray_backend.cluster_totals(rc, ENGINE, 2)
            fresh = {r: t for r, t in seen.items() if r not in old and t["requests"] > 0}
            if fresh:
                break
        time.sleep(1.0)
    assert fresh, "no replacement replica served within 120 s"


def test_without_ray_the_command_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install 'wattserve\[ray\]'"):
        ray_backend.require_ray()


def test_ray_section_is_checked(tmp_path: Path) -> None:
    base = {"models": [{"name": "m", "replicas": [{"kind": "mock"}]}]}
    cfg, rc = split_config({**base, "ray": {"ingress": {"num_replicas": 3}}})
    assert rc.ingress.num_replicas == 3 and rc.address is None
    with pytest.raises(ConfigError, match="ray.engines: other"):
        split_config({**base, "ray": {"engines": {"other": {"num_cpus": 1}}}})
    with pytest.raises(ConfigError, match="ray.ingress"):
        split_config({**base, "ray": {"ingress": {"num_replicas": 0}}})
    with pytest.raises(ConfigError, match="not both"):
        split_config({**base, "ray": {"ingress": {"num_replicas": 2, "autoscaling_config": {}}}})
