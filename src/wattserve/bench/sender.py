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

import ctypes
import gc
import heapq
import mmap
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

WAKE_EARLY_S = 0.0002  # the child first wakes this long before a send time, then spins
MIN_EARLY_S, MAX_EARLY_S = 0.00002, 0.0004  # bounds of the wake-up margin as it adapts
SPIN_SHARE = 0.1  # the margin is at most this share of the gap since the previous send
SLOTS = 1 << 16  # send stamps in the shared memory (a ring: a slot is reused 65,536 later)
MAX_DATA = (1 << 20) - 64  # larger requests are written by the loop at their send time
_WINDOW = 200  # wake-ups the margin is computed from
_PR_SET_TIMERSLACK = 29
_HEAD = struct.Struct("<dI")  # due (perf_counter; < 0: cancel), slot
_PART = struct.Struct("<II")  # slot, bytes written (the child's report of a short write)
_STAMP = struct.Struct("<d")


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
        shm_fd = _shared_fd(SLOTS * _STAMP.size)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            self._mm = mmap.mmap(shm_fd, SLOTS * _STAMP.size)
            cmd = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
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
            _STAMP.pack_into(self._mm, slot * _STAMP.size, 0.0)
        return Ticket(self, due, slot)

    def submit(self, tk: Ticket, transport: asyncio.Transport, data: bytes) -> None:
        if self._sock is None or tk._cancelled:
            raise ConnectionAbortedError("the send process is closed")
        tk._data, tk._transport = data, transport
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        if plain and len(data) <= MAX_DATA:
            head = _HEAD.pack(tk.due, tk._slot)
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
                self._sock.send(_HEAD.pack(-1.0, tk._slot))
            except OSError:
                pass

    def _stamp(self, slot: int) -> float | None:
        if self._mm is None:
            return None
        (t,) = _STAMP.unpack_from(self._mm, slot * _STAMP.size)
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
                msg = self._sock.recv(_PART.size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if len(msg) != _PART.size:  # the child is gone: sends from here on are the loop's
                if self._loop is not None and self._sock is not None:
                    self._loop.remove_reader(self._sock.fileno())
                    self._sock.close()
                    self._sock = None
                return
            slot, n = _PART.unpack(msg)
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


# ---------------------------------------------------------------------- the child
# spins at SCHED_IDLE (it runs only when the CPU has nothing else to run) until its parent,
# the send process, is gone
_SPIN = (
    "import os,sys\n"
    "os.sched_setaffinity(0,{int(sys.argv[1])})\n"
    "p=os.getppid()\n"
    "while os.getppid()==p:\n"
    " for _ in range(100000):pass\n"
)


def _keep_awake(on: bool) -> int | None:
    """When ``on``, pin this process to its last allowed CPU and keep that CPU from going
    idle with a ``SCHED_IDLE`` spinner pinned to it (it runs only when nothing else would):
    in a VM, a timer that wakes a halted virtual CPU waits for the host to run that CPU
    again. Returns the spinner's pid (None where ``SCHED_IDLE`` or affinity is missing)."""
    if not on or not hasattr(os, "sched_getaffinity") or not hasattr(os, "SCHED_IDLE"):
        return None
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        argv = [sys.executable, "-I", "-S", "-c", _SPIN, str(cpu)]
        # SCHED_IDLE from its first instruction (an inherited FIFO policy would hold the
        # CPU while the interpreter starts)
        idle = (os.SCHED_IDLE, os.sched_param(0))
        return os.posix_spawn(sys.executable, argv, dict(os.environ), scheduler=idle)
    except (OSError, AttributeError):
        return None


def _tune(prio: int) -> None:
    """``SCHED_FIFO`` at ``prio`` (when > 0 and allowed) and a 1 ns timer slack."""
    if prio > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
        except OSError:
            pass
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


class _Child:
    """The send loop: a heap of ``(due, seq, slot, fd, data)``; ``live`` maps each queued
    slot to its entry, so a cancel or a resubmit of the slot drops the queued one."""

    def __init__(self, sock: socket.socket, mm: mmap.mmap, early_s: float) -> None:
        self.sock, self.mm, self.early = sock, mm, early_s
        self.heap: list[tuple[float, int, int, int, bytes]] = []
        self.live: dict[int, tuple[float, int, int, int, bytes]] = {}
        self.seq = 0
        self.last_due = -1e9
        self.late: list[float] = []
        self.buf = bytearray(MAX_DATA + _HEAD.size)
        self.anc = socket.CMSG_SPACE(struct.calcsize("i"))

    def run(self) -> None:
        clock, heap = time.perf_counter, self.heap
        rlist = [self.sock]
        while True:
            if heap:
                due = heap[0][0]
                early = min(self.early, SPIN_SHARE * (due - self.last_due))
                target = due - early
                rem = target - clock()
                if rem <= 0:
                    self._send(heapq.heappop(heap))
                    continue
                if select.select(rlist, [], [], rem)[0]:
                    if not self._drain():
                        return

                else:
                    self._adapt(clock() - target)
            else:
                select.select(rlist, [], [])
                if not self._drain():
                    return

    def _drain(self) -> bool:
        """Take every queued message; False at the end of the queue (the parent closed it)."""
        while True:
            try:
                n, anc, flags, _ = self.sock.recvmsg_into([self.buf], self.anc)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if n == 0:
                return False
            fd = -1
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = struct.unpack("i", raw[: struct.calcsize("i")])[0]
            due, slot = _HEAD.unpack_from(self.buf)
            old = self.live.pop(slot, None)  # its heap entry is skipped when it comes up
            if old is not None:
                os.close(old[3])
            if due < 0 or fd < 0 or flags & socket.MSG_TRUNC:
                if fd >= 0:
                    os.close(fd)
                continue
            self.seq += 1
            entry = (due, self.seq, slot, fd, bytes(self.buf[_HEAD.size : n]))
            self.live[slot] = entry
            heapq.heappush(self.heap, entry)

    def _send(self, entry: tuple[float, int, int, int, bytes]) -> None:
        due, _, slot, fd, data = entry
        if self.live.get(slot) is not entry:  # cancelled or resubmitted
            return
        del self.live[slot]
        self.last_due = due
        clock = time.perf_counter
        while clock() < due:  # the last stretch: a spin of about the margin
            pass
        _STAMP.pack_into(self.mm, slot * _STAMP.size, clock())  # before the write
        n = len(data)
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError:  # a broken connection: its reader reports it to the request
            pass
        finally:
            os.close(fd)
        if n < len(data):
            try:
                self.sock.send(_PART.pack(slot, n))
            except OSError:
                pass

    def _adapt(self, late_s: float) -> None:
        """Raise the margin at once after a wake-up later than it; lower it per window."""
        if 1.25 * late_s > self.early:
            self.early = min(MAX_EARLY_S, 1.25 * late_s)
        w = self.late
        w.append(late_s)
        if len(w) >= _WINDOW:
            w.sort()
            self.early = min(MAX_EARLY_S, max(MIN_EARLY_S, 1.25 * w[int(0.98 * len(w))]))
            w.clear()


def _child_main(argv: list[str]) -> None:
    sock_fd, shm_fd, prio = int(argv[0]), int(argv[1]), int(argv[2])
    early, keep_awake = float(argv[3]), argv[4] == "1"
    gc.disable()
    awake = _keep_awake(keep_awake)  # before the policy: the spinner starts at SCHED_IDLE
    _tune(prio)
    sock = socket.socket(fileno=sock_fd)
    mm = mmap.mmap(shm_fd, SLOTS * _STAMP.size)
    os.close(shm_fd)
    sock.send(b"R")
    sock.setblocking(False)
    try:
        _Child(sock, mm, early).run()
    finally:
        if awake is not None:
            os.kill(awake, signal.SIGKILL)
            os.waitpid(awake, 0)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
