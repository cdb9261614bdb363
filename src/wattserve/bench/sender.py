"""``SendProcess``: writes prepared requests on their sockets at their send times, from a
process of its own.

A send made from the event loop waits for whatever the loop is running when it falls due
(other requests' chunks, records, a garbage collection), which put milliseconds into the
tail of the send-time error at 500 requests/s and above. A send thread in the client's
process fixed the loop's share but not the GIL's: at 2,000 requests/s most late sends were
a thread the kernel woke on time (no run-queue wait) that then waited 150-400 us for the
GIL the loop thread held. So the loop prepares each request ahead (payload, connection,
response parser armed) and hands ``(due, slot, bytes)`` with the connection's socket
(``SCM_RIGHTS``, the kernel's duplicate of the descriptor) to a small stdlib-only child
process over a ``SOCK_SEQPACKET`` pair. The child waits in ``select`` until shortly before
``due`` (microsecond timeouts, 1 ns timer slack), spins the last stretch, stamps the send
time into a shared memory slot and writes the bytes with ``os.write``; the loop keeps
reading the answers, and reads the stamp after the answer came (the stamp is stored
before the write, the answer comes after it). A write the socket buffer cuts short is
reported back and the transport writes the rest. How early the child wakes adapts to how
late its wake-ups come: up at once after a wake-up later than the margin, down to the
98th percentile of the last 200 (each plus a quarter, within 20-400 us), and at most a
tenth of the time between sends (50 us at 2,000 requests/s), since each microsecond of
margin is a microsecond of spin on a core the loop and a local server need.

The child takes the caller's real-time policy one priority above it (``SCHED_FIFO`` under
``pacer.realtime()``), so a due send preempts the loop on a shared core, and it runs
with the garbage collector off (it keeps only its queue). It spins only the margin: on
Linux 6.12 and later a SCHED_FIFO task that keeps a CPU busy lets the fair server run that
CPU's normal tasks for up to 50 ms per second ahead of it.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from wattserve.bench import send_child
from wattserve.bench.send_child import HEAD, MAX_DATA, PART, SLOTS, STAMP

if TYPE_CHECKING:
    import asyncio

WAKE_EARLY_S = 0.0002  # the child first wakes this long before a send time, then spins


class Ticket:
    """One request's send: ``writer(transport, data)`` queues it; ``sent_s`` is the stamp
    taken just before the write (None until written); ``cancel()`` drops it if still queued
    and frees its slot (call it once the request is over)."""

    __slots__ = ("due", "_sender", "_slot", "_data", "_transport", "_cancelled", "_local")

    def __init__(self, sender: SendProcess, due: float, slot: int) -> None:
        self.due = due
        self._sender = sender
        self._slot = slot
        self._data = b""
        self._transport: asyncio.Transport | None = None
        self._cancelled = False
        self._local: float | None = None  # a send the loop made itself (fallback)

    @property
    def sent_s(self) -> float | None:
        if self._local is not None:
            return self._local
        return self._sender._stamp(self._slot)

    def __lt__(self, other: Ticket) -> bool:
        return self.due < other.due

    def writer(self, transport: asyncio.Transport, data: bytes) -> None:
        """Queue ``data`` for ``transport`` at ``due`` (called on the loop, by the client)."""
        self._sender.submit(self, transport, data)

    def cancel(self) -> None:
        self._sender.cancel(self)


class SendProcess:
    """The child process that writes queued tickets at their ``due`` times (``perf_counter``,
    the same monotonic clock in both processes).

    Use as a context manager (or ``start()``/``close()``) on the running loop; ``start()``
    returns once the child is ready. ``ticket(due)`` makes a send for one request; hand its
    ``writer`` to the client (``openai.transport.WRITER``).
    """

    def __init__(self, wake_early_s: float = WAKE_EARLY_S, keep_awake: bool = False) -> None:
        self.wake_early_s = wake_early_s
        self.keep_awake = keep_awake
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._mm: mmap.mmap | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: dict[int, Ticket] = {}  # queued tickets by slot (a short write's rest)
        self._next = 0

    def __enter__(self) -> SendProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout_s: float = 10.0) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        prio = 0
        if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) in (
            getattr(os, "SCHED_FIFO", -1),
            getattr(os, "SCHED_RR", -1),
        ):
            p = os.sched_getparam(0).sched_priority + 1
            prio = min(p, os.sched_get_priority_max(os.SCHED_FIFO))
        shm_fd = _shared_fd(SLOTS * STAMP.size)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            self._mm = mmap.mmap(shm_fd, SLOTS * STAMP.size)
            cmd = [sys.executable, "-I", "-S", os.path.abspath(send_child.__file__)]
            cmd += [str(theirs.fileno()), str(shm_fd), str(prio), repr(self.wake_early_s)]
            cmd.append("1" if self.keep_awake else "0")
            self._proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(), shm_fd))
        finally:
            theirs.close()
            os.close(shm_fd)
        self._sock = ours
        ours.settimeout(timeout_s)
        try:
            if ours.recv(1) != b"R":
                raise OSError("the send process did not start")
        except BaseException:
            self.close()
            raise
        ours.setblocking(False)
        self._loop.add_reader(ours.fileno(), self._on_report)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()  # the child sees the end of its queue and exits
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._live.clear()

    def ticket(self, due: float) -> Ticket:
        slot = self._next
        self._next = (slot + 1) % SLOTS
        if self._mm is not None:
            STAMP.pack_into(self._mm, slot * STAMP.size, 0.0)
        return Ticket(self, due, slot)

    def submit(self, tk: Ticket, transport: asyncio.Transport, data: bytes) -> None:
        if self._sock is None or tk._cancelled:
            raise ConnectionAbortedError("the send process is closed")
        tk._data, tk._transport = data, transport
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        if plain and len(data) <= MAX_DATA:
            head = HEAD.pack(tk.due, tk._slot)
            fds = struct.pack("i", sock.fileno())
            try:
                self._sock.sendmsg([head, data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                self._live[tk._slot] = tk
                return
            except OSError:  # the queue is full (or the message too large): the loop sends
                pass
        assert self._loop is not None
        delay = max(0.0, tk.due - time.perf_counter())
        self._loop.call_later(delay, self._write_here, tk)

    def cancel(self, tk: Ticket) -> None:
        tk._cancelled = True
        if self._live.pop(tk._slot, None) is tk and tk.sent_s is None and self._sock is not None:
            try:
                self._sock.send(HEAD.pack(-1.0, tk._slot))
            except OSError:
                pass

    def _stamp(self, slot: int) -> float | None:
        if self._mm is None:
            return None
        (t,) = STAMP.unpack_from(self._mm, slot * STAMP.size)
        return t if t > 0.0 else None

    def _write_here(self, tk: Ticket) -> None:
        if tk._cancelled or tk._transport is None or tk._transport.is_closing():
            return
        tk._local = time.perf_counter()
        tk._transport.write(tk._data)

    def _on_report(self) -> None:
        """The child wrote only part of a request (a full socket buffer): write the rest."""
        while self._sock is not None:
            try:
                msg = self._sock.recv(PART.size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if len(msg) != PART.size:  # the child is gone: sends from here on are the loop's
                if self._loop is not None and self._sock is not None:
                    self._loop.remove_reader(self._sock.fileno())
                    self._sock.close()
                    self._sock = None
                return
            slot, n = PART.unpack(msg)
            tk = self._live.get(slot)
            if tk is not None and tk._transport is not None and not tk._transport.is_closing():
                tk._transport.write(tk._data[n:])


def _shared_fd(size: int) -> int:
    """A descriptor of ``size`` zeroed bytes both processes can map."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("wattserve-send-stamps", 0)
    else:  # pragma: no cover - not Linux
        import tempfile

        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    os.ftruncate(fd, size)
    return fd
