"""Soak the gateway: many requests at high concurrency through ``wattserve serve`` in front of
two mock replicas, once plain, once with a replica SIGKILLed mid-run, once long to watch the
gateway's memory. Bounded: each run has a request count and every request a hard timeout.

    .venv/bin/python benchmarks/gateway_soak.py                 # (a) and (b), then (c) 200k
    .venv/bin/python benchmarks/gateway_soak.py --runs plain,kill  # (a) and (b) only
    .venv/bin/python benchmarks/gateway_soak.py --json soak.json

Processes, all on 127.0.0.1 free ports: two ``wattserve mock-server`` replicas (8 tokens an
answer, zero token delay unless ``--token-delay-ms``) and ``wattserve serve --config`` in
front of them (default limits, memory cache). The client is this project's own HTTP client
(``wattserve.openai.transport.Origin``, keep-alive, one connection per concurrent request);
it reads the raw bytes and checks each answer itself.

- ``plain``: ``--requests`` (20,000) at ``--concurrency`` (512); half stream, 30% repeat one
  of the last 1,000 distinct prompts (cache hits). Expected: 0 lost, 0 5xx, every answer right.
- ``kill``: the same, replica 0 SIGKILLed when half the requests were sent; its streams are
  slowed (``--kill-token-delay-ms``) so that some are cut mid-way. Expected: every request
  answered right or ended by a clean error (a 5xx with an OpenAI-style JSON error, or an SSE
  error event with code ``stream_broken`` followed by ``[DONE]``); 0 hung, 0 dropped.
- ``rss``: ``--rss-requests`` (200,000) at ``--rss-concurrency`` (128); the gateway's RSS
  (psutil) at 20,000 and at the end. Expected: growth under 30 MB.

Outcomes: ``ok`` (the right text; a stream with its usage event and ``[DONE]`` last),
``http_5xx`` (a clean JSON error with a 5xx status), ``stream_broken`` (a clean SSE error
event), ``hung`` (no full answer within ``--timeout-s``), ``dropped`` (the connection closed
without an answer), ``other`` (anything else: a 4xx, a wrong text, malformed JSON or SSE).
Lost = hung + dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from soak_stack import TOKENS, Stack, cache_hits, gateway_rss_mb, raise_fd_limit
from wattserve.openai.transport import Origin, Timeouts

EXPECTED = " tok" * TOKENS  # what a mock replica answers with --output-len 8
RECENT = 1000  # repeats pick one of the last RECENT distinct prompts (the cache holds them)


def plan(
    n: int, seed: int, stream_share: float = 0.5, repeat_share: float = 0.3
) -> Iterator[tuple[bytes, bool]]:
    """``n`` request bodies: ``stream_share`` streaming, ``repeat_share`` repeating one of the
    last ``RECENT`` distinct bodies exactly (so the gateway's cache can answer it)."""
    rng = random.Random(seed)
    recent: list[tuple[bytes, bool]] = []
    for i in range(n):
        if recent and rng.random() < repeat_share:
            yield recent[rng.randrange(len(recent))]
            continue
        stream = rng.random() < stream_share
        body: dict[str, object] = {
            "model": "mock",
            "messages": [{"role": "user", "content": f"soak prompt {seed} {i}"}],
            "temperature": 0,
            "max_tokens": TOKENS,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        item = (orjson.dumps(body), stream)
        recent.append(item)
        if len(recent) > RECENT:
            recent.pop(0)
        yield item


@dataclass
class Tally:
    ok: int = 0
    http_5xx: int = 0
    stream_broken: int = 0
    hung: int = 0
    dropped: int = 0
    other: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)  # the first few unexpected answers

    @property
    def sent(self) -> int:
        return self.ok + self.http_5xx + self.stream_broken + self.hung + self.dropped + self.other

    @property
    def lost(self) -> int:
        return self.hung + self.dropped

    def add(self, outcome: str, detail: str = "") -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if outcome not in ("ok", "stream_broken") and detail and len(self.samples) < 10:
            self.samples.append(f"{outcome}: {detail[:200]}")


def _is_error_json(data: bytes) -> bool:
    try:
        err = orjson.loads(data)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return isinstance(err, dict) and isinstance(err.get("message"), str)


def check_stream(data: bytes) -> tuple[str, str]:
    """An SSE body's outcome: ``ok`` (the expected text, usage, ``[DONE]`` last),
    ``stream_broken`` (a clean error event, then ``[DONE]``) or ``other``."""
    events = [e for e in data.split(b"\n\n") if e.strip()]
    if not events or events[-1].strip() != b"data: [DONE]":
        return "other", f"stream without [DONE] last: {data[-120:]!r}"
    text: list[str] = []
    usage = False
    for ev in events[:-1]:
        if not ev.startswith(b"data: "):
            return "other", f"not an SSE data event: {ev[:120]!r}"
        try:
            obj = orjson.loads(ev[6:])
        except orjson.JSONDecodeError:
            return "other", f"malformed event: {ev[:120]!r}"
        if "error" in obj:
            if obj["error"].get("code") == "stream_broken":
                return "stream_broken", ""
            return "other", f"error event: {ev[:200]!r}"
        usage = usage or bool(obj.get("usage"))
        text += [c["delta"].get("content") or "" for c in obj.get("choices") or ()]
    if "".join(text) != EXPECTED:
        return "other", f"stream text {''.join(text)!r}"
    if not usage:
        return "other", "stream without the usage event it asked for"
    return "ok", ""


def check_whole(data: bytes) -> tuple[str, str]:
    try:
        text = orjson.loads(data)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return "other", f"malformed answer: {data[:200]!r}"
    return ("ok", "") if text == EXPECTED else ("other", f"text {text!r}")


async def one(origin: Origin, body: bytes, stream: bool, timeout_s: float) -> tuple[str, str]:
    """Send one chat request and judge its answer (see the module docstring)."""
    limits = Timeouts(connect_s=timeout_s, read_s=timeout_s, total_s=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            resp = await origin.request("POST", "/chat/completions", body, limits)
            try:
                data = await resp.read()
            except BaseException:
                resp.close()
                raise
            resp.release()
    except TimeoutError as exc:  # the transport's own timeouts are TimeoutErrors too
        return "hung", f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        return "dropped", f"{type(exc).__name__}: {exc}"
    status = resp.status
    if status >= 500:
        if _is_error_json(data):
            return "http_5xx", f"{status} {data[:160]!r}"
        return "other", f"{status} without a JSON error: {data[:160]!r}"
    if status != 200:
        return "other", f"{status} {data[:160]!r}"
    return check_stream(data) if stream else check_whole(data)


async def soak(
    url: str,
    n: int,
    concurrency: int,
    *,
    seed: int = 0,
    timeout_s: float = 20.0,
    on_sent: dict[int, Callable[[], None]] | None = None,
    on_done: dict[int, Callable[[], None]] | None = None,
) -> Tally:
    """``n`` requests from ``plan`` at ``concurrency``; ``on_sent[k]`` is called as the k-th
    request goes out (a kill), ``on_done[k]`` once k were answered (a measurement)."""
    origin = Origin(url, max_idle=concurrency)
    tally = Tally()
    sent_hooks, done_hooks = dict(on_sent or {}), dict(on_done or {})
    requests = plan(n, seed)
    sent = 0
    t0 = time.perf_counter()

    async def worker() -> None:
        nonlocal sent
        for body, stream in requests:
            sent += 1
            if (hook := sent_hooks.pop(sent, None)) is not None:
                hook()
            outcome, detail = await one(origin, body, stream, timeout_s)
            tally.add(outcome, detail)
            if (hook := done_hooks.pop(tally.sent, None)) is not None:
                hook()

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        origin.close()
    tally.seconds = time.perf_counter() - t0
    return tally


def row(name: str, t: Tally, extra: str = "") -> str:
    rps = t.sent / t.seconds if t.seconds else 0.0
    return (
        f"{name:<6} {t.sent:>8} {t.ok:>8} {t.lost:>5} {t.hung:>5} {t.dropped:>7} "
        f"{t.http_5xx:>5} {t.stream_broken:>7} {t.other:>6} {t.seconds:>7.1f} {rps:>7.0f}  {extra}"
    )


HEADER = (
    f"{'run':<6} {'sent':>8} {'ok':>8} {'lost':>5} {'hung':>5} {'dropped':>7} "
    f"{'5xx':>5} {'broken':>7} {'other':>6} {'s':>7} {'req/s':>7}  notes"
)


Run = tuple[str, dict[str, object], bool]  # the table row, the figures, whether it passed


async def run_plain(a: argparse.Namespace) -> Run:
    """(a): no faults; every request must be answered right."""
    with Stack(a.token_delay_ms) as stack:
        t = await soak(stack.url, a.requests, a.concurrency, timeout_s=a.timeout_s)
        hits, errors = cache_hits(stack), stack.log_errors()
    good = t.lost == t.http_5xx == t.stream_broken == t.other == errors == 0
    line = row("plain", t, f"cache hits {hits}, log errors {errors}; {'PASS' if good else 'FAIL'}")
    return line, {**asdict(t), "lost": t.lost, "cache_hits": hits, "log_errors": errors}, good


async def run_kill(a: argparse.Namespace) -> Run:
    """(b): replica 0 SIGKILLed half-way; every request answered right or cleanly refused."""
    half = a.requests // 2
    with Stack(a.kill_token_delay_ms) as stack:
        kill = {half: lambda: stack.kill_replica(0)}
        t = await soak(stack.url, a.requests, a.concurrency, timeout_s=a.timeout_s, on_sent=kill)
        errors = stack.log_errors()
        good = t.lost == t.other == errors == 0 and stack.replicas[0].poll() is not None
        if not good:
            print(stack.gateway_log(), file=sys.stderr)
    note = f"replica 0 killed at request {half}, log errors {errors}; {'PASS' if good else 'FAIL'}"
    return row("kill", t, note), {**asdict(t), "lost": t.lost, "log_errors": errors}, good


async def run_rss(a: argparse.Namespace) -> Run:
    """(c): the gateway's RSS after ``--rss-requests`` within 30 MB of that after the first
    ``--rss-first``; sampled every ``--rss-first`` requests answered."""
    with Stack(a.token_delay_ms) as stack:
        rss: dict[int, float] = {0: gateway_rss_mb(stack)}

        def sample(k: int) -> Callable[[], None]:
            return lambda: rss.__setitem__(k, gateway_rss_mb(stack))

        marks = {k: sample(k) for k in range(a.rss_first, a.rss_requests + 1, a.rss_first)}
        t = await soak(stack.url, a.rss_requests, a.rss_concurrency, seed=1,
                       timeout_s=a.timeout_s, on_done=marks)  # fmt: skip
        first, last = rss[a.rss_first], gateway_rss_mb(stack)
        errors = stack.log_errors()
    growth = last - first
    good = growth < 30 and t.lost == t.http_5xx == t.stream_broken == t.other == errors == 0
    print("gateway RSS (MB) by requests answered:", {k: round(v, 1) for k, v in rss.items()})
    note = (
        f"RSS {first:.1f} MB at {a.rss_first}, {last:.1f} MB at {t.sent}: "
        f"{growth:+.1f} MB; {'PASS' if good else 'FAIL'}"
    )
    return row("rss", t, note), {**asdict(t), "lost": t.lost, "rss_mb": rss, "end_mb": last}, good


async def main() -> int:
    ap = argparse.ArgumentParser(description="soak the gateway in front of two mock replicas")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=512)
    ap.add_argument("--timeout-s", type=float, default=20.0, help="hard limit per request")
    ap.add_argument("--token-delay-ms", type=float, default=0.0)
    ap.add_argument("--kill-token-delay-ms", type=float, default=10.0)
    ap.add_argument("--rss-requests", type=int, default=200_000)
    ap.add_argument("--rss-concurrency", type=int, default=128)
    ap.add_argument("--rss-first", type=int, default=20_000, help="the first RSS sample")
    ap.add_argument(
        "--runs", default="plain,kill,rss", help="which runs, comma-separated (rss is the long one)"
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()
    runs = [r for r in ("plain", "kill", "rss") if r in a.runs.split(",")]
    if set(a.runs.split(",")) - set(runs) or not runs:
        print(f"gateway_soak: --runs takes plain, kill, rss; got {a.runs!r}", file=sys.stderr)
        return 2
    if a.requests < 2 or a.concurrency < 1 or not 0 < a.rss_first < a.rss_requests:
        print("gateway_soak: --requests >= 2, --concurrency >= 1, 0 < --rss-first < --rss-requests",
              file=sys.stderr)  # fmt: skip
        return 2
    limit = raise_fd_limit(4 * max(a.concurrency, a.rss_concurrency) + 1024)
    print(f"open-file limit {limit}; load average {os.getloadavg()} on {os.cpu_count()} CPUs")
    todo = {"plain": run_plain, "kill": run_kill, "rss": run_rss}
    lines, results, passed = [HEADER], {}, True
    for name in runs:
        line, figures, good = await todo[name](a)
        print(line, flush=True)
        lines.append(line)
        results[name] = figures
        passed &= good
    print("\n" + "\n".join(lines))
    print(f"load average after: {os.getloadavg()}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0 if passed else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main()))
