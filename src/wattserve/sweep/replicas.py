"""Replica processes for a sweep point, and one engine that spreads load over them.

CPU: ``replicas`` processes of ``wattserve.sweep.replica_server``, each with
``threads // replicas`` threads and pinned to its own cores. GPU / external engines: a
command template (``{model} {port} {memory_fraction} {device} {index}`` filled in, e.g.
``vllm serve {model} --port {port} --gpu-memory-utilization {memory_fraction}``) with the
device memory split evenly over the replicas. The processes are started and stopped by the
gateway's ``wattserve.engines.launcher.Launcher``; ``RoundRobinEngine`` spreads requests with
the gateway's round-robin balancer and remembers which replica answered each request.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from wattserve.engines.base import EngineBase
from wattserve.engines.launcher import Launcher, fill, free_port
from wattserve.errors import ConfigError
from wattserve.protocols import Engine
from wattserve.serve.pool import RoundRobin
from wattserve.types import Chunk, Request


@dataclass
class ReplicaPlan:
    """What to launch for one replica count."""

    replicas: int
    threads_per_replica: int
    cpus: list[list[int]] = field(default_factory=list)  # per replica; empty: no pinning
    memory_fraction: float | None = None

    def describe(self) -> str:
        pin = "; cores " + " | ".join(",".join(map(str, c)) for c in self.cpus) if self.cpus else ""
        mem = f"; {self.memory_fraction:g} of device memory each" if self.memory_fraction else ""
        return f"{self.replicas} replica(s) x {self.threads_per_replica} thread(s){pin}{mem}"


def plan_replicas(
    replicas: int,
    total_threads: int,
    pin: bool = True,
    memory_utilization: float | None = None,
    cpu_ids: Sequence[int] | None = None,
) -> ReplicaPlan:
    """Split ``total_threads`` (and cores, and device memory) evenly over ``replicas``."""
    if replicas < 1:
        raise ConfigError(f"replicas must be >= 1, got {replicas}")
    if total_threads < replicas:
        raise ConfigError(
            f"{replicas} replicas need at least {replicas} threads (have --threads {total_threads})"
        )
    per = total_threads // replicas
    cpus: list[list[int]] = []
    if pin:
        ids = sorted(
            cpu_ids
            if cpu_ids is not None
            else (
                os.sched_getaffinity(0)
                if hasattr(os, "sched_getaffinity")
                else range(os.cpu_count() or 1)
            )
        )
        if len(ids) >= replicas * per:
            cpus = [list(ids[i * per : (i + 1) * per]) for i in range(replicas)]
    frac = None if memory_utilization is None else memory_utilization / replicas
    return ReplicaPlan(replicas, per, cpus, frac)


def replica_command(
    model: str,
    backend: str,
    threads: int,
    port: int,
    cpus: Sequence[int],
    mock_token_s: float,
    device: str = "cpu",
    load_format: str = "auto",
    memory_fraction: float | None = None,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "wattserve.sweep.replica_server",
        "--model",
        model,
        "--backend",
        backend,
        "--threads",
        str(threads),
        "--port",
        str(port),
        "--mock-token-s",
        repr(mock_token_s),
        "--parent-pid",
        str(os.getpid()),
    ]
    if cpus:
        cmd += ["--cpus", ",".join(map(str, cpus))]
    if device != "cpu":
        cmd += ["--device", device]
    if load_format != "auto":
        cmd += ["--load-format", load_format]
    if memory_fraction is not None:
        cmd += ["--memory-fraction", f"{memory_fraction:g}"]
    return cmd


class ReplicaSet:
    """Starts the replica processes of a plan, waits until each answers, stops them all."""

    def __init__(
        self,
        model: str,
        plan: ReplicaPlan,
        backend: str = "auto",
        command: str | None = None,
        ready_timeout_s: float = 600.0,
        mock_token_s: float = 0.001,
        host: str = "127.0.0.1",
        omp_wait_policy: str = "passive",
        device: str = "cpu",
        load_format: str = "auto",
    ) -> None:
        self.omp_wait_policy = omp_wait_policy
        self.device, self.load_format = device, load_format
        self.model, self.plan, self.backend, self.command = model, plan, backend, command
        self.ready_timeout_s, self.mock_token_s, self.host = ready_timeout_s, mock_token_s, host
        self.launcher = Launcher(host)
        self.urls: list[str] = []

    async def start(self) -> list[str]:
        """Start every replica process and wait until each answers ``/v1/models``."""
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(self.plan.threads_per_replica),
            MKL_NUM_THREADS=str(self.plan.threads_per_replica),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
        )
        if self.omp_wait_policy != "default":
            env["OMP_WAIT_POLICY"] = self.omp_wait_policy.upper()
        ports = [free_port(self.host) for _ in range(self.plan.replicas)]
        tasks = [
            asyncio.ensure_future(
                self.launcher.spawn(
                    self.command_for(i, port),
                    port,
                    "/v1/models",
                    self.ready_timeout_s,
                    env,
                    name=f"replica-{i}",
                    model=self.model,
                )
            )
            for i, port in enumerate(ports)
        ]
        try:
            started = await asyncio.gather(*tasks)
        except BaseException:  # one replica failed (or we were cancelled): stop them all
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop()
            raise
        self.urls = [str(s.url) for s in started]
        return self.urls

    def command_for(self, index: int, port: int) -> list[str]:
        """The argument list that starts replica ``index`` on ``port``."""
        if self.command:
            mem = "" if self.plan.memory_fraction is None else f"{self.plan.memory_fraction:g}"
            return fill(
                shlex.split(self.command),
                model=self.model,
                port=port,
                index=index,
                device="0",
                memory_fraction=mem,
            )
        cpus = self.plan.cpus[index] if self.plan.cpus else []
        return replica_command(
            self.model,
            self.backend,
            self.plan.threads_per_replica,
            port,
            cpus,
            self.mock_token_s,
            self.device,
            self.load_format,
            self.plan.memory_fraction if self.device != "cpu" else None,
        )

    async def stop(self) -> None:
        await self.launcher.stop(grace_s=10.0)

    @property
    def pids(self) -> list[int]:
        return self.launcher.pids


def client_engine(base_url: str, model: str) -> Engine:
    """The OpenAI client engine (``wattserve.openai``) that sends requests to one replica."""
    from wattserve.engines.openai_http import OpenAIHTTPEngine

    return OpenAIHTTPEngine(base_url, model=model)


class RoundRobinEngine(EngineBase):
    """One ``Engine`` over several replica engines, spread by the gateway's ``RoundRobin``
    balancer; ``assignments`` remembers which replica served each request."""

    def __init__(self, engines: Sequence[Engine], names: Sequence[str] | None = None) -> None:
        if not engines:
            raise ConfigError("no replicas to send requests to")
        self.engines = list(engines)
        self.names = list(names or (f"replica-{i}" for i in range(len(engines))))
        self.name = f"round-robin({len(engines)})"
        self.assignments: dict[str, str] = {}  # request id -> replica name
        self.balancer = RoundRobin()

    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        i = self.balancer.pick(request, self.engines)
        self.assignments[request.id] = self.names[i]
        async for chunk in self.engines[i].stream(request):
            yield chunk

    async def start(self) -> None:
        await asyncio.gather(*(e.start() for e in self.engines))

    async def aclose(self) -> None:
        await asyncio.gather(*(e.aclose() for e in self.engines))

    def healthy(self) -> bool:
        return all(e.healthy() for e in self.engines)
