"""``SendThread``: writes prepared requests on their sockets at their send times, off the loop.

A send made from the event loop waits for whatever the loop is running when it falls due
(other requests' chunks, records, a garbage collection), which put milliseconds into the
tail of the send-time error at 500 requests/s and above. Here the loop prepares each request
a few ms ahead (payload, connection, response parser armed) and hands ``(due, socket,
bytes)`` to one thread. The thread sleeps until shortly before ``due`` (the sleep releases
the GIL), spins the last stretch, stamps the send time and writes the bytes with
``os.write`` on a duplicate of the connection's socket; the loop keeps reading the answers.
How early it wakes adapts to how late its wake-ups come: up at once after a wake-up later
than the margin, down to the 98th percentile of the last 200 (each plus a quarter, within
20-400 us). On an idle machine a timed wait returns ~50 us late, on a loaded one ~150 us,
and every microsecond of margin is a microsecond of spin, so the margin is also held
under a tenth of the time between sends (50 us at 2,000 requests/s).
The response path is untouched, so the records and metrics are the same, measured from the
stamped send time.

While the thread runs, the interpreter's switch interval is made short, so the thread gets
the GIL within microseconds of asking for it, not after up to 5 ms. The thread takes the
caller's real-time policy one priority above it (``SCHED_FIFO`` under ``pacer.realtime()``;
at equal priority a FIFO thread waits for the loop's to block), and a 1 ns timer slack, so
its wake-ups are on time on a busy machine.
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import os
import sys
import threading
import time

WAKE_EARLY_S = 0.0002  # the thread first wakes this long before a send time, then spins
MIN_EARLY_S, MAX_EARLY_S = 0.00002, 0.0004  # bounds of the wake-up margin as it adapts
SPIN_SHARE = 0.1  # the margin is at most this share of the gap since the previous send
SWITCH_S = 0.00001  # the switch interval while the thread runs (the default is 5 ms)
_WINDOW = 200  # wake-ups the margin is computed from
_PR_SET_TIMERSLACK = 29


class Ticket:
    """One request's send: ``writer(transport, data)`` queues it; ``sent_s`` is the stamp
    taken just before the write (None until written); ``cancel()`` drops it if still queued."""

    __slots__ = ("due", "sent_s", "_sender", "_fd", "_data", "_transport", "_cancelled")

    def __init__(self, sender: SendThread, due: float) -> None:
        self.due = due
        self.sent_s: float | None = None
        self._sender = sender
        self._fd = -1
        self._data = b""
        self._transport: asyncio.Transport | None = None
        self._cancelled = False

    def __lt__(self, other: Ticket) -> bool:
        return self.due < other.due

    def writer(self, transport: asyncio.Transport, data: bytes) -> None:
        """Queue ``data`` for ``transport`` at ``due`` (called on the loop, by the client)."""
        self._sender.submit(self, transport, data)

    def cancel(self) -> None:
        self._sender.cancel(self)


class SendThread:
    """The thread that writes queued tickets at their ``due`` times (``perf_counter``).

    Use as a context manager (or ``start()``/``close()``); ``ticket(due)`` makes a send for
    one request; hand its ``writer`` to the client (``openai.transport.WRITER``).
    """

    def __init__(self, wake_early_s: float = WAKE_EARLY_S, switch_s: float = SWITCH_S) -> None:
        self.wake_early_s = wake_early_s
        self.switch_s = switch_s
        self._heap: list[Ticket] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._old_switch = sys.getswitchinterval()
        self._policy: tuple[int, os.sched_param] | None = None
        self._wake_late: list[float] = []  # how late the last timed waits returned
        self._last_due = -1e9

    def __enter__(self) -> SendThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if hasattr(os, "sched_getscheduler"):
            self._policy = (os.sched_getscheduler(0), os.sched_getparam(0))
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(self.switch_s)
        self._thread = threading.Thread(target=self._run, name="wattserve-sender", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for tk in self._heap:
                _close_fd(tk)
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
            sys.setswitchinterval(self._old_switch)

    def ticket(self, due: float) -> Ticket:
        return Ticket(self, due)

    def submit(self, tk: Ticket, transport: asyncio.Transport, data: bytes) -> None:
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        with self._cond:
            if self._closed or tk._cancelled:
                raise ConnectionAbortedError("the send thread is closed")
            if tk._fd >= 0:  # submitted again (a retry on a fresh connection)
                os.close(tk._fd)
            tk._fd = os.dup(sock.fileno()) if plain else -1
            tk._data, tk._transport = data, transport
            heapq.heappush(self._heap, tk)
            if self._heap[0] is tk:
                self._cond.notify()

    def cancel(self, tk: Ticket) -> None:
        with self._cond:
            tk._cancelled = True
            if tk in self._heap:
                self._heap.remove(tk)
                heapq.heapify(self._heap)
                _close_fd(tk)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        _tune_thread(self._policy)
        clock = time.perf_counter
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    if self._heap:
                        due = self._heap[0].due
                        # the spin holds a core (and, in turns, the GIL) that the loop and a
                        # local server need: at most SPIN_SHARE of the time between sends
                        early = min(self.wake_early_s, SPIN_SHARE * (due - self._last_due))
                        target = due - early
                        rem = target - clock()
                        if rem <= 0:
                            tk = heapq.heappop(self._heap)
                            # the write owns the socket's duplicate from here: a resubmit of
                            # the ticket (a retry on a fresh connection) brings its own
                            fd, data, tr = tk._fd, tk._data, tk._transport
                            tk._fd = -1
                            break
                        if not cond.wait(rem):  # timed out: a wake-up whose lateness counts
                            self._adapt(clock() - target)
                    else:
                        cond.wait()
            due = self._last_due = tk.due
            while clock() < due:  # the last stretch: a spin of about wake_early_s
                pass
            self._write(tk, clock(), fd, data, tr)

    def _adapt(self, late_s: float) -> None:
        """Raise the margin at once after a wake-up later than it; lower it per window."""
        if 1.25 * late_s > self.wake_early_s:
            self.wake_early_s = min(MAX_EARLY_S, 1.25 * late_s)
        w = self._wake_late
        w.append(late_s)
        if len(w) >= _WINDOW:
            w.sort()
            early = 1.25 * w[int(0.98 * len(w))]
            self.wake_early_s = min(MAX_EARLY_S, max(MIN_EARLY_S, early))
            w.clear()

    def _write(
        self, tk: Ticket, now: float, fd: int, data: bytes, tr: asyncio.Transport | None
    ) -> None:
        tk.sent_s = now  # before the write: the answer may be read before this thread resumes
        n = 0
        if fd >= 0:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                n = 0
            except OSError:  # a broken connection: its reader reports it to the request
                return
            finally:
                os.close(fd)
        if n < len(data) and self._loop is not None and tr is not None:
            # TLS or a full socket buffer: the transport writes the rest
            self._loop.call_soon_threadsafe(tr.write, data[n:])


def _close_fd(tk: Ticket) -> None:
    if tk._fd >= 0:
        os.close(tk._fd)
        tk._fd = -1


def _is_realtime(policy: tuple[int, os.sched_param]) -> bool:
    return policy[0] in (getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1))


def _set_policy(policy: tuple[int, os.sched_param]) -> None:
    try:
        os.sched_setscheduler(0, *policy)  # pid 0: the calling thread
    except OSError:
        pass


def _tune_thread(policy: tuple[int, os.sched_param] | None, above: int = 1) -> None:
    """The caller's real-time policy (when it has one) ``above`` its priority, so a send that
    falls due preempts the loop on a shared core, and a 1 ns timer slack."""
    if policy is not None and _is_realtime(policy):
        prio = min(policy[1].sched_priority + above, os.sched_get_priority_max(policy[0]))
        _set_policy((policy[0], os.sched_param(prio)))
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass
