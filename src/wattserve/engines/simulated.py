"""A deterministic engine whose latency and energy come from cost models, not a model.

Latency and energy come either from ``ModelFit``s (``runtime_s`` and ``energy_j`` in
input/output tokens, evaluated with ``wattserve.fit.predict``) or from fixed parameters:
``ttft_s + (output_tokens - 1) * tpot_s`` seconds and
``joules_per_input_token * in + joules_per_token * out`` joules. ``stream`` sleeps on that
schedule, scaled by ``time_scale`` (0 = no sleeping at all), and yields one chunk per
token. ``jitter`` adds seeded log-normal noise per request; with the same seed and
request id the result is always the same.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from wattserve.engines.base import EngineBase
from wattserve.errors import ConfigError
from wattserve.types import Chunk, ModelFit, Request, Usage


class SimulatedEngine(EngineBase):
    def __init__(
        self,
        runtime_fit: ModelFit | None = None,
        energy_fit: ModelFit | None = None,
        ttft_s: float = 0.05,
        tpot_s: float = 0.02,
        joules_per_token: float = 0.5,
        joules_per_input_token: float = 0.0,
        time_scale: float = 1.0,
        seed: int = 0,
        jitter: float = 0.0,
        output_len: int | None = None,
        token_text: str = " tok",
        name: str = "simulated",
        model: str = "simulated",
    ) -> None:
        if min(ttft_s, tpot_s, joules_per_token, joules_per_input_token, time_scale, jitter) < 0:
            raise ConfigError("simulated engine parameters must be >= 0")
        for fit, quantity in ((runtime_fit, "runtime_s"), (energy_fit, "energy_j")):
            if fit is not None and fit.quantity != quantity:
                raise ConfigError(f"expected a {quantity} fit, got one for {fit.quantity}")
        self.runtime_fit = runtime_fit
        self.energy_fit = energy_fit
        self.ttft_s = ttft_s
        self.tpot_s = tpot_s
        self.joules_per_token = joules_per_token
        self.joules_per_input_token = joules_per_input_token
        self.time_scale = time_scale
        self.seed = seed
        self.jitter = jitter
        self.output_len = output_len
        self.token_text = token_text
        self.name = name
        self.model = model

    # ------------------------------------------------------------------ costs
    def _rng(self, request: Request) -> random.Random:
        return random.Random(zlib.crc32(f"{self.seed}:{request.id}".encode()))

    def tokens(self, request: Request) -> tuple[int, int]:
        """(input tokens, output tokens) this engine will report for ``request``."""
        n_in = (
            request.input_tokens
            if request.input_tokens is not None
            else len(request.text().split())
        )
        n_out = request.max_tokens
        if self.output_len is not None and not request.ignore_eos:
            n_out = min(n_out, self.output_len)
        return max(0, n_in), max(1, n_out)

    @staticmethod
    def _predict(fit: ModelFit, n_in: int, n_out: int) -> float:
        from wattserve.fit import (
            predict,
        )  # owned by the fit module; imported only when a fit is used

        return float(predict(fit, n_in, n_out, warn=False))

    def _timing(self, request: Request) -> tuple[float, float, int, int]:
        n_in, n_out = self.tokens(request)
        if self.runtime_fit is not None:
            total = max(0.0, self._predict(self.runtime_fit, n_in, n_out))
            ttft = min(total, max(0.0, self._predict(self.runtime_fit, n_in, 1)))
            tpot = (total - ttft) / (n_out - 1) if n_out > 1 else 0.0
        else:
            ttft, tpot = self.ttft_s, self.tpot_s
        if self.jitter > 0:
            f = math.exp(self._rng(request).gauss(0.0, self.jitter))
            ttft, tpot = ttft * f, tpot * f
        return ttft, tpot, n_in, n_out

    def cost(self, request: Request) -> tuple[float, float]:
        """(runtime_s, energy_j) of serving ``request``; deterministic."""
        ttft, tpot, n_in, n_out = self._timing(request)
        runtime = ttft + tpot * (n_out - 1)
        if self.energy_fit is not None:
            energy = max(0.0, self._predict(self.energy_fit, n_in, n_out))
        else:
            energy = self.joules_per_input_token * n_in + self.joules_per_token * n_out
        return runtime, energy

    # ------------------------------------------------------------------ stream
    async def stream(self, request: Request) -> AsyncIterator[Chunk]:
        ttft, tpot, n_in, n_out = self._timing(request)
        scale = self.time_scale
        start = time.perf_counter()
        for i in range(n_out):
            if scale > 0:
                delay = start + (ttft + i * tpot) * scale - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))
            elif i == 0:
                await asyncio.sleep(0)
            last = i == n_out - 1
            yield Chunk(
                text=self.token_text,
                t_s=time.perf_counter(),
                tokens=1,
                finish_reason=("length" if n_out >= request.max_tokens else "stop")
                if last
                else None,
                usage=Usage(n_in, n_out, source="engine") if last else None,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime_fit.form
            if self.runtime_fit
            else f"ttft {self.ttft_s} s + tpot {self.tpot_s} s",
            "energy": self.energy_fit.form
            if self.energy_fit
            else f"{self.joules_per_token} J/token",
            "time_scale": self.time_scale,
            "seed": self.seed,
        }
