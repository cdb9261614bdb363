"""Send requests at their scheduled times with bounded concurrency; log each as it finishes.

One dispatcher coroutine walks the precomputed schedule. Against an HTTP engine (one whose
client sends through ``openai.transport.Origin``) it starts each request ``LEAD_S`` before
its send time: the task builds the payload, takes a connection and arms its response
parser, then hands the bytes to ``bench.sender.SendProcess``, which writes them at the send
time from a process of its own, so a send waits neither for the loop's other work (chunks,
records, garbage collection) nor for the GIL; the record's ``sent_s`` is the child's stamp
at the write. Other
engines are paced on the loop (``bench.pacer.Pacer``: a timerfd wake-up, then a short spin).
Either way the dispatcher takes a concurrency slot before it starts a request. A task whose
request finished sends the next request itself
when that one is already due (as-fast-as-possible and overloaded schedules), keeping its
slot: a freed slot is refilled at once, not two loop iterations later (the dispatcher's
wake-up, then the new task's first step), which under a bound kept about a third of the
slots empty.
Every finished request is written to ``requests.jsonl`` and flushed at once, so a killed run
keeps every finished request. The steady-state window is recorded from the send times.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from wattserve.bench.metrics import error_kind, mark_truncation
from wattserve.bench.pacer import Pacer
from wattserve.bench.sender import SendProcess, Ticket
from wattserve.engines.base import complete
from wattserve.openai.transport import WRITER, Origin
from wattserve.types import Completion, Measurement, Request

ProgressFn = Callable[[int, int], None]

SPIN_S = 0.0002  # at least this last stretch before a send time is spent yielding, not sleeping
MIN_STEADY_S = 0.5
LEAD_S = 0.01  # a request sent by the send process is prepared this long before its send time


def run_async(coro: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (a faster client loop), else asyncio's."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


async def sleep_until(t: float, clock: Callable[[], float] = time.perf_counter) -> None:
    """Return at ``t`` (perf_counter) with sub-ms error.

    Event loops wait in whole milliseconds (epoll rounds a timeout up, libuv keeps ms
    timers), so sleep a whole number of ms that ends at least ``SPIN_S`` before ``t``, then
    yield to the loop (other tasks keep running) until ``t`` is reached.
    """
    while True:
        rem = t - clock()
        if rem <= 0:
            return
        coarse_ms = math.floor((rem - SPIN_S) * 1000.0)
        if coarse_ms >= 1:
            await asyncio.sleep(coarse_ms / 1000.0)
        else:
            await asyncio.sleep(0)


_FIELDS = tuple(Completion.__dataclass_fields__)


def _sends_from_process(engine: Any) -> bool:
    """The engine's requests go out through ``Origin`` (so they honour ``transport.WRITER``)."""
    return isinstance(getattr(getattr(engine, "client", None), "transport", None), Origin)


def record_of(c: Completion, **extra: Any) -> dict[str, Any]:
    """``Completion.to_dict()`` without its deep copy (the hot path), plus ``extra``."""
    d = {k: getattr(c, k) for k in _FIELDS}
    d["chunk_t"] = list(c.chunk_t)
    d.update(extra)
    return d


@dataclass
class PointRun:
    """What one point (or one resumed segment of it) produced."""

    label: str
    t0: float
    t_end: float = 0.0
    completions: list[Completion] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    send_error_s: list[float] = field(default_factory=list)
    first_full_s: float | None = None  # in-flight count first reached its target
    ramp_done_s: float | None = None  # send time of the first request after ramp-up
    last_send_s: float | None = None
    measurements: list[Measurement] = field(default_factory=list)
    energy_note: str | None = None

    def steady_bounds(self, fixed_concurrency: bool) -> tuple[float, float] | None:
        start = self.first_full_s if fixed_concurrency else self.ramp_done_s
        end = self.last_send_s
        if start is None or end is None or end - start < MIN_STEADY_S:
            return None
        return start, end


async def run_schedule(
    engine: Any,
    requests: Sequence[Request],
    offsets_s: Sequence[float],
    max_concurrency: int | None = None,
    *,
    label: str = "",
    segment: int = 0,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_progress: ProgressFn | None = None,
    timeout_s: float | None = None,
    count_tokens: Callable[[str], int] | None = None,
    ramp_requests: int = 0,
    start_delay_s: float = 0.002,
    send_process: bool = True,
    keep_cpu_awake: bool = False,
) -> PointRun:
    """Send ``requests[i]`` at ``t0 + offsets_s[i]``, at most ``max_concurrency`` in flight.

    A paced schedule (not one burst) against an HTTP engine is sent by a ``SendProcess``
    unless ``send_process`` is False (then it is paced on the loop, as for other engines).
    ``keep_cpu_awake`` runs the send process's idle-priority spinner on its CPU (sharper
    wake-ups in a VM, at the cost of that CPU's idle time: off by default, since it burns
    power a machine-wide energy meter would charge to the run).

    ``on_record`` receives each finished request's record (``Completion.to_dict()`` plus
    ``point``, ``segment``, ``scheduled_s``, ``send_offset_s``) as soon as it finishes.
    """
    if len(requests) != len(offsets_s):
        raise ValueError("one offset per request")
    n = len(requests)
    order = sorted(range(n), key=lambda i: offsets_s[i])
    sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    target = min(max_concurrency or n, n)
    paced = n > 1 and offsets_s[order[-1]] > offsets_s[order[0]]  # not one burst
    sender = (
        SendProcess(keep_awake=keep_cpu_awake)
        if send_process and paced and _sends_from_process(engine)
        else None
    )
    if sender is not None:
        sender.start()  # before t0: the child's start-up (tens of ms) delays no send
        gc.freeze()  # a full collection of everything alive before the run took ~25 ms
    t0 = time.perf_counter() + start_delay_s
    due_at = [t0 + offsets_s[i] for i in order]
    run = PointRun(label=label, t0=t0)
    in_flight = 0
    done = 0
    cursor = 0  # the next request to send, in send order
    tasks: set[asyncio.Task] = set()
    lead = LEAD_S if sender is not None else 0.0
    # with the send process the dispatcher only has to be early: a timerfd wake-up, no spin
    pacer = Pacer() if sender is None else Pacer(spin_s=0.0, drain_s=0.0)

    def take(now: float) -> int | None:
        """The next request in send order when it is due at ``now`` (its bookkeeping done)."""
        nonlocal cursor, in_flight
        k = cursor
        if k >= n or due_at[k] > now + lead:
            return None
        cursor = k + 1
        in_flight += 1
        at = max(now, due_at[k])  # a request prepared ahead goes out at its send time
        if run.first_full_s is None and in_flight >= target:
            run.first_full_s = at
        if k == ramp_requests:
            run.ramp_done_s = at
        if cursor == n:
            run.last_send_s = at
        return k

    async def one(k: int | None) -> None:
        # holds one concurrency slot; after each request it sends the next one itself when
        # that one is already due, so a freed slot is refilled at once rather than a loop
        # iteration later by the dispatcher (which would also start a task for it)
        nonlocal in_flight, done
        try:
            while k is not None:
                i = order[k]
                req = requests[i]
                tk: Ticket | None = None
                if sender is not None:  # a request not due yet goes out from the send process
                    if due_at[k] > time.perf_counter():
                        tk = sender.ticket(due_at[k])
                    WRITER.set(tk.writer if tk is not None else None)
                try:
                    c = await complete(engine, req, timeout_s=timeout_s, count_tokens=count_tokens)
                    c = mark_truncation(c, req)
                finally:
                    in_flight -= 1
                    if tk is not None:
                        tk.cancel()
                if tk is not None and tk.sent_s is not None:
                    c = replace(c, sent_s=tk.sent_s)
                scheduled = offsets_s[i]
                rec = record_of(
                    c,
                    error_kind=error_kind(c),
                    point=label,
                    segment=segment,
                    scheduled_s=scheduled,
                    send_offset_s=c.sent_s - t0,
                )
                run.completions.append(c)
                run.records.append(rec)
                run.send_error_s.append(c.sent_s - (t0 + scheduled))
                if on_record is not None:
                    on_record(rec)
                done += 1
                if on_progress is not None:
                    on_progress(done, n)
                k = take(time.perf_counter())
        finally:
            if sem is not None:
                sem.release()

    try:
        while cursor < n:
            due = due_at[cursor] - lead
            if due > time.perf_counter():
                await pacer.wait_until(due)
            if sem is not None:
                await sem.acquire()
            k = take(time.perf_counter())
            if k is None:  # a finishing request took it meanwhile; the next is not due yet
                if sem is not None:
                    sem.release()
                continue
            task = asyncio.create_task(one(k))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if run.last_send_s is None:  # no requests
            run.last_send_s = time.perf_counter()
        while tasks:
            await asyncio.gather(*list(tasks))
        run.t_end = time.perf_counter()  # before the send process's exit is waited for
    except BaseException:
        for t in list(tasks):
            t.cancel()
        raise
    finally:
        pacer.close()
        if sender is not None:
            sender.close()
            gc.unfreeze()
    return run


def record_windows(run: PointRun, sampler: Any, fixed_concurrency: bool) -> list[Measurement]:
    """``whole`` (first send to last end) and, when long enough, ``steady`` from the sampler."""
    if sampler is None or not run.completions:
        return []
    t_first = min(c.sent_s for c in run.completions)
    out = []
    try:
        out.append(sampler.window("whole", min(t_first, run.t0), run.t_end))
        bounds = run.steady_bounds(fixed_concurrency)
        if bounds is not None:
            out.append(sampler.window("steady", *bounds))
        else:
            run.energy_note = (
                f"steady window shorter than {MIN_STEADY_S} s: J/token from the whole point"
            )
    except Exception as exc:  # noqa: BLE001 - a window outside the series: keep what we have
        run.energy_note = f"energy window failed: {exc}"
    run.measurements = out
    return out


def send_error_stats_ms(errors_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of actual-minus-scheduled send time, in ms."""
    import numpy as np

    if not errors_s:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    a = np.asarray(errors_s) * 1000.0
    return {
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }
