"""Precise waits on the event loop: a Linux timerfd armed on the monotonic clock, then a spin.

Event-loop timers round to whole milliseconds (epoll's timeout is in ms; libuv keeps ms
timers), which is too coarse for arrivals every 0.5 ms. A ``timerfd`` armed with an
absolute ``CLOCK_MONOTONIC`` deadline (the clock ``time.perf_counter`` reads on Linux) wakes
the loop within tens of microseconds, ``DRAIN_S`` early: the loop then runs what is queued
(other requests' chunks and records) so it is not queued ahead of the send, and the wait
ends with a short busy spin on ``perf_counter``. Where timerfd is
missing (not Linux, no libc), it falls back to ms sleeps plus yielding to the loop.

On a machine whose cores are all busy, a woken process can still wait milliseconds for a
core; ``realtime()`` puts the calling thread in ``SCHED_FIFO`` for a block (where allowed)
so the wake-up takes a core at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

SPIN_S = 0.00005  # the last stretch before the deadline is a busy spin
DRAIN_S = 0.0003  # before the spin, yield to the loop this long so queued callbacks run first
YIELD_S = 0.0002  # fallback: last stretch spent yielding to the loop, not sleeping

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or time.get_clock_info("perf_counter").adjustable:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        return libc
    except (OSError, AttributeError):
        return None


class Pacer:
    """``await pacer.wait_until(t)`` returns at ``t`` (a ``perf_counter`` time), other tasks
    running meanwhile. Use as an async context manager, or call ``close()``."""

    def __init__(
        self, spin_s: float = SPIN_S, drain_s: float = DRAIN_S, use_timerfd: bool = True
    ) -> None:
        self.spin_s = spin_s
        self.drain_s = drain_s
        self._fd = -1
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spec = _Itimerspec()
        self._libc = _libc() if use_timerfd else None
        if self._libc is not None:
            fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd < 0:
                self._libc = None
            else:
                self._fd = fd

    @property
    def method(self) -> str:
        return "timerfd+spin" if self._fd >= 0 else "ms-sleep+yield"

    async def __aenter__(self) -> Pacer:
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        e: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    async def wait_until(self, t: float) -> None:
        if self._fd < 0:
            await _sleep_until_ms(t)
            return
        wake = t - self.spin_s - self.drain_s
        if time.perf_counter() < wake:
            loop = asyncio.get_running_loop()
            if self._loop is not loop:
                if self._loop is not None:
                    self._loop.remove_reader(self._fd)
                loop.add_reader(self._fd, self._fired)
                self._loop = loop
            sec = math.floor(wake)
            self._spec.it_value.tv_sec = sec
            self._spec.it_value.tv_nsec = int((wake - sec) * 1e9)
            assert self._libc is not None
            if self._libc.timerfd_settime(
                self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None
            ):
                await _sleep_until_ms(t)
                return
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        while t - time.perf_counter() > self.spin_s:  # noqa: ASYNC110 - a poll, no event to wait on
            await asyncio.sleep(0)
        while time.perf_counter() < t:  # the last stretch: a spin of at most ~spin_s
            pass


async def _sleep_until_ms(t: float) -> None:
    """Whole-ms sleeps ending at least ``YIELD_S`` before ``t``, then yield to the loop."""
    while True:
        rem = t - time.perf_counter()
        if rem <= 0:
            return
        coarse_ms = math.floor((rem - YIELD_S) * 1000.0)
        await asyncio.sleep(coarse_ms / 1000.0 if coarse_ms >= 1 else 0)


@contextmanager
def realtime(priority: int = 10) -> Iterator[str]:
    """Run the block with the calling thread in ``SCHED_FIFO`` at ``priority``, when allowed.

    Yields what it got (``"SCHED_FIFO 10"``, or why it kept the normal policy); the old
    policy is restored on exit. Keep the block short and mostly idle: a FIFO thread that
    spins holds its core.
    """
    if not hasattr(os, "sched_setscheduler"):
        yield "normal scheduling (no sched_setscheduler here)"
        return
    old = os.sched_getscheduler(0)
    old_param = os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        yield f"normal scheduling (SCHED_FIFO refused: {exc.strerror})"
        return
    try:
        yield f"SCHED_FIFO {priority}"
    finally:
        os.sched_setscheduler(0, old, old_param)
