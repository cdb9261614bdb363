"""``SweepConfig``: replicas per device x concurrency (x request rate) x engine backend."""

from __future__ import annotations

import math
import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wattserve.errors import ConfigError


def default_threads() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    backends: list[str] = Field(default_factory=lambda: ["auto"])
    replicas: list[int] = Field(default_factory=lambda: [1, 2])
    max_concurrencies: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    request_rates: list[float] | None = None  # None: as fast as the concurrency bound allows
    threads: int = Field(default_factory=default_threads, ge=1)  # total, split over replicas
    pin_cores: bool = True
    # OpenMP threads of a replica block (passive) rather than spin (active) at barriers. With
    # several processes sharing cores, spinning threads starve each other: on a loaded 2-core
    # machine a 2-thread torch replica decoded 16 tokens in ~60 s spinning and ~1.4 s passive.
    omp_wait_policy: str = "passive"
    # GPU / external engines: a command template per replica; memory split over replicas
    command: str | None = None
    memory_utilization: float = Field(0.9, gt=0, le=1)
    # embedded engine: cpu or cuda[:i] (replicas share that GPU, each with its memory share);
    # load_format dummy: bundled config with random weights (wattserve.engines.dummy)
    device: str = "cpu"
    load_format: str = "auto"

    input_len: int = Field(32, ge=1)
    output_len: int = Field(32, ge=1)
    num_prompts: int = Field(8, ge=1)  # per point; raised to 2 x concurrency when smaller
    num_warmups: int = Field(1, ge=0)  # per replica
    seed: int = 0
    endpoint: str = "completions"
    timeout_s: float | None = Field(300.0, gt=0)

    goodput: dict[str, float] = Field(default_factory=dict)  # ttft/tpot/e2el -> ms
    min_attainment: float = Field(0.9, gt=0, le=1)
    objective: str = "throughput"  # or "energy"
    throughput_floor: float | None = Field(None, ge=0)

    meter: str = "auto"
    result_dir: str = "runs/sweep"
    ready_timeout_s: float = Field(600.0, gt=0)
    mock_token_s: float = Field(0.001, ge=0)  # backend "mock" only

    @field_validator("backends")
    @classmethod
    def _backends(cls, v: list[str]) -> list[str]:
        known = ("auto", "local", "llama-cpp", "simulated", "mock", "all")
        bad = [b for b in v if b not in known]
        if bad or not v:
            raise ValueError(
                f"unknown backend(s) {', '.join(bad) or '(none)'}; choose from {', '.join(known)}"
            )
        if "all" in v and len(v) > 1:
            raise ValueError("'all' already means every installed CPU engine")
        return list(dict.fromkeys(v))

    @field_validator("replicas", "max_concurrencies")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(x < 1 for x in v):
            raise ValueError("needs one or more values, each >= 1")
        return sorted(set(v))

    @field_validator("request_rates")
    @classmethod
    def _rates(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(math.isnan(r) or r <= 0 for r in v):
            raise ValueError("request rates must be > 0 (or inf)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        from wattserve.engines.local import check_device

        return check_device(v)

    @field_validator("load_format")
    @classmethod
    def _load_format(cls, v: str) -> str:
        if v not in ("auto", "dummy"):
            raise ValueError("choose auto (the model's weights) or dummy (random weights)")
        return v

    @field_validator("omp_wait_policy")
    @classmethod
    def _omp(cls, v: str) -> str:
        if v not in ("passive", "active", "default"):
            raise ValueError("choose passive, active or default (leave OMP_WAIT_POLICY unset)")
        return v

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: str) -> str:
        if v not in ("throughput", "energy"):
            raise ValueError(
                "choose 'throughput' (max tok/s under the SLOs) "
                "or 'energy' (min J/token above a floor)"
            )
        return v

    @field_validator("goodput")
    @classmethod
    def _goodput(cls, v: dict[str, float]) -> dict[str, float]:
        for k, ms in v.items():
            if k not in ("ttft", "tpot", "e2el") or not ms > 0:
                raise ValueError(
                    f"SLO {k}:{ms:g} invalid; use ttft, tpot or e2el with a positive ms value"
                )
        return v

    @classmethod
    def build(cls, **kwargs: object) -> SweepConfig:
        try:
            return cls.model_validate(kwargs)
        except ValidationError as exc:
            parts = []
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"]).replace("_", "-")
                loc = {
                    "backends": "backend",
                    "max-concurrencies": "max-concurrency",
                    "request-rates": "request-rate",
                    "command": "replica-command",
                    "memory-utilization": "gpu-memory-utilization",
                }.get(loc, loc)
                parts.append(f"--{loc}: {e['msg'].removeprefix('Value error, ')}")
            raise ConfigError("invalid sweep options: " + "; ".join(parts)) from None

    def prompts_for(self, concurrency: int) -> int:
        return max(self.num_prompts, 2 * concurrency)

    def rates(self) -> list[float]:
        return list(self.request_rates) if self.request_rates else [math.inf]
