"""A request's books. ``Books.open`` opens a ``Ledger`` when a request goes upstream (after a
cache miss); ``Ledger.close`` closes it once, when its answer has ended however it ended:
energy (the accountant's begin/end on the replica's device), metrics, the cache put of a
whole answer, the replica's mid-stream failure on its health record, and the wake-up of the
identical requests that waited for this answer (single flight). Between the two, each try on
a replica is ``engage``d and, when it failed before its first byte, ``disengage``d.

Energy: a replica on a metered device is charged its share of this host's meter; one on an
unmetered device (``EnergyAccountant.is_metered``) the fitted joules of its model there
(source ``fitted``). Tokens: a stream whose server sent no usage has its prompt tokens
estimated from the request's text (``estimate_prompt_tokens``; ``prompt_tokens_source:
estimated`` in the usage). Latency: TTFT, E2E, TPOT and the gaps between content arrivals
(ITL, ``arrived``) go to the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from wattserve.openai.answers import usage_dict
from wattserve.protocols import Cache
from wattserve.serve.energy import FITTED, EnergyAccountant
from wattserve.serve.metrics import GatewayMetrics
from wattserve.serve.pool import ReplicaPool
from wattserve.serve.replica import Replica
from wattserve.serve.request_log import RequestLog
from wattserve.types import Request

log = logging.getLogger("wattserve.serve")
CostEstimate = Callable[[str, int, int], float | None]  # (model, in, out tokens) -> J
# (request as asked, answering model, input, output tokens, the routing decision's quality
# scores or None) -> the joules of answering it again (the router's pick for auto/router-*:
# wattserve.route.costs.RecomputeCost), or None
RecomputeCost = Callable[[Request, str, int, int, Mapping[str, float] | None], float | None]
CHARS_PER_TOKEN = 4.0  # the estimate of a prompt's tokens when the server counts none
MAX_GAPS = 4096  # content arrival gaps kept per request for the ITL histogram


def estimate_prompt_tokens(req: Request) -> int:
    """A prompt's tokens when no server counted them: its characters over ``CHARS_PER_TOKEN``
    plus 4 per chat message (role and separators), at least 1."""
    n = round(len(req.text()) / CHARS_PER_TOKEN)
    if req.messages:
        n += 4 * len(req.messages)
    return max(1, n)


class Books:
    """What every ledger writes to, and the requests in flight."""

    def __init__(
        self,
        pool: ReplicaPool,
        cache: Cache | None = None,
        accountant: EnergyAccountant | None = None,
        metrics: GatewayMetrics | None = None,
        cost_estimate: CostEstimate | None = None,
        log_content: bool = False,
        recompute_cost: RecomputeCost | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.pool, self.cache, self.accountant = pool, cache, accountant
        self.request_log = request_log
        self.metrics, self.cost_estimate, self.log_content = metrics, cost_estimate, log_content
        self.recompute_cost = recompute_cost  # the cache cost; metered joules when None
        self.flights: dict[str, asyncio.Future[None]] = {}  # cache key -> done when stored
        self.in_flight = 0
        self._idle: asyncio.Event | None = None  # set when in_flight drops to 0 (draining)

    def open(
        self,
        req: Request,
        body: dict[str, Any],
        model: str,
        key: str | None,
        t0: float,
        scores: Mapping[str, float] | None = None,
    ) -> Ledger:
        """The ledger of a request going upstream (``t0``: when it arrived, perf_counter;
        ``scores``: the router's predicted quality per model when it chose ``model``)."""
        return Ledger(self, req, body, model, key, t0, scores)

    def refused(self, model: str, status: int, t0: float) -> None:
        """A request answered with an error before any ledger was opened."""
        if self.metrics is not None:
            self.metrics.done(model, status, "none", None, time.perf_counter() - t0, 0, 0, None, "")

    async def wait_idle(self, grace_s: float) -> int:
        """Wait up to ``grace_s`` for the requests in flight; returns those left."""
        if self.in_flight:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        return self.in_flight


class Ledger:
    """The books of one request that went upstream."""

    __slots__ = (
        "books",
        "req",
        "body",
        "model",
        "key",
        "t0",
        "rep",
        "ttft_s",
        "flight",
        "closed",
        "_token",
        "_last_t",
        "_seen",
        "gaps",
        "scores",
    )

    def __init__(
        self,
        books: Books,
        req: Request,
        body: dict[str, Any],
        model: str,
        key: str | None,
        t0: float,
        scores: Mapping[str, float] | None = None,
    ) -> None:
        self.books, self.req, self.body, self.model, self.key = books, req, body, model, key
        self.t0 = t0
        self.scores = scores  # the routing decision's, so the cache cost needs no second scoring
        self.rep: Replica | None = None
        self.ttft_s: float | None = None
        self.closed = False
        self._token = 0.0
        self._last_t: float | None = None  # when content last arrived (perf_counter)
        self._seen = 0  # content parts seen so far
        self.gaps: list[float] = []  # seconds between content arrivals (ITL samples)
        self.flight: str | None = None  # the cache key this request computes for its twins
        if key is not None and key not in books.flights:
            books.flights[key] = asyncio.get_running_loop().create_future()
            self.flight = key
        books.in_flight += 1

    # ------------------------------------------------------------------ tries
    def engage(self, rep: Replica) -> None:
        """A try on ``rep`` begins."""
        self.rep = rep
        rep.outstanding += 1
        if self.books.accountant is not None:
            self._token = self.books.accountant.begin(rep.device)

    def disengage(self) -> None:
        """The try failed before its first byte (its energy is charged to nobody)."""
        self._end(ok=False)
        self.rep = None

    def _end(self, ok: bool) -> float | None:
        rep = self.rep
        if rep is None:
            return None
        rep.outstanding -= 1
        if ok:
            rep.served += 1
        acc = self.books.accountant
        return None if acc is None else acc.end(rep.device, self._token)

    def arrived(self, parts: int) -> None:
        """``parts`` content parts have arrived in all so far: a gap (ITL sample) since the
        previous arrival when there are new ones."""
        if parts <= self._seen:
            return
        now = time.perf_counter()
        if self._last_t is not None and len(self.gaps) < MAX_GAPS:
            self.gaps.append(now - self._last_t)
        self._last_t = now
        self._seen = parts

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("x-wattserve-model", self.model),
            ("x-wattserve-replica", self.rep.name if self.rep else "-"),
            ("x-wattserve-cache", "miss" if self.key else "bypass"),
        ]

    # ------------------------------------------------------------------ closing
    def close(
        self,
        text: str = "",
        finish: str | None = None,
        in_tok: int = 0,
        out_tok: int = 0,
        error: str | None = None,
        status: int | None = None,
        broken: bool = False,
    ) -> dict[str, Any]:
        """Close the books on the answer (once; later calls change nothing). ``error``: the
        answer is not whole (never cached); ``broken``: the replica failed mid-answer.
        Returns the usage dict the client is sent."""
        b = self.books
        acc = b.accountant
        source = acc.source if acc is not None else "null"
        if self.closed:
            return usage_dict(in_tok, out_tok, None, False, source)
        self.closed = True
        rep = self.rep
        estimated = rep is not None and in_tok == 0 and (out_tok > 0 or error is None)
        if estimated:
            in_tok = estimate_prompt_tokens(self.req)
        energy = self._end(ok=error is None)
        if rep is not None and acc is not None and not acc.is_metered(rep.device):
            energy = acc.charge_fitted(self.model, rep.device, in_tok, out_tok)
            source = FITTED
        if broken and self.rep is not None and error is not None:
            b.pool.failed(self.rep, error)
        if b.metrics is not None:
            b.metrics.done(
                self.model,
                status or (200 if error is None else 502),
                "miss" if self.key else "bypass",
                self.ttft_s,
                time.perf_counter() - self.t0,
                in_tok,
                out_tok,
                energy,
                source,
            )
            if (status or 200) < 400 and error is None:
                tpot = None
                if self.ttft_s is not None and out_tok > 1:
                    tpot = (time.perf_counter() - self.t0 - self.ttft_s) / (out_tok - 1)
                b.metrics.timing(self.model, tpot, self.gaps, in_tok if estimated else 0)
        if error is None and self.key is not None and b.cache is not None:
            expected = None
            if b.recompute_cost is not None:
                expected = b.recompute_cost(self.req, self.model, in_tok, out_tok, self.scores)
            cost = expected if expected is not None else energy
            if not cost and b.cost_estimate is not None:
                cost = b.cost_estimate(self.model, in_tok, out_tok)
            entry = {
                "text": text,
                "finish": finish,
                "input_tokens": in_tok,
                "output_tokens": out_tok,
                "energy_j": energy,  # metered joules of this answer
                "expected_j": expected,  # the cost the cache ranks by (None: energy_j)
                "model": self.model,
            }
            b.cache.put(
                self.key, entry, cost=float(cost or 1e-3 * max(1, out_tok)), size=len(text) + 64
            )
        if b.request_log is not None:
            b.request_log.write(
                self.req,
                self.model,
                in_tok,
                out_tok,
                text,
                energy,
                source,
                error=error,
                replica=rep.name if rep is not None else None,
                status=status or (200 if error is None else 502),
            )
        self._land()
        b.in_flight -= 1
        if b._idle is not None and not b.in_flight:
            b._idle.set()
        if b.log_content and error is None:
            log.info("answer %s replica=%s text=%r", self.req.id, self.rep and self.rep.name, text)
        usage = usage_dict(in_tok, out_tok, energy, False, source)
        if estimated:
            usage["prompt_tokens_source"] = "estimated"
        return usage

    def _land(self) -> None:
        """Wake the identical requests that waited for this one's answer."""
        if self.flight is not None:
            fut = self.books.flights.pop(self.flight, None)
            self.flight = None
            if fut is not None and not fut.done():
                fut.set_result(None)
