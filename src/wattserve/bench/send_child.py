"""The send process itself (``bench.sender.SendProcess`` starts it): stdlib only, run by
path with ``python -I -S``, so it imports nothing of wattserve and starts in tens of ms.

It receives ``(due, slot, bytes)`` with a socket (``SCM_RIGHTS``) over a ``SOCK_SEQPACKET``
pair, waits in ``select`` until shortly before ``due``, spins the last stretch, stamps the
send time into the shared memory slot and writes; ``bench.sender`` describes why.
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
import sys
import time

MIN_EARLY_S, MAX_EARLY_S = 0.00002, 0.0004  # bounds of the wake-up margin as it adapts
SPIN_SHARE = 0.1  # the margin is at most this share of the gap since the previous send
MAX_DATA = (1 << 20) - 64  # larger requests are written by the loop at their send time
SLOTS = 1 << 16  # send stamps in the shared memory (a ring: a slot is reused 65,536 later)
_WINDOW = 200  # wake-ups the margin is computed from
_PR_SET_TIMERSLACK = 29
HEAD = struct.Struct("<dI")  # due (perf_counter; < 0: cancel), slot
PART = struct.Struct("<II")  # slot, bytes written (the child's report of a short write)
STAMP = struct.Struct("<d")


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
        self.buf = bytearray(MAX_DATA + HEAD.size)
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
            due, slot = HEAD.unpack_from(self.buf)
            old = self.live.pop(slot, None)  # its heap entry is skipped when it comes up
            if old is not None:
                os.close(old[3])
            if due < 0 or fd < 0 or flags & socket.MSG_TRUNC:
                if fd >= 0:
                    os.close(fd)
                continue
            self.seq += 1
            entry = (due, self.seq, slot, fd, bytes(self.buf[HEAD.size : n]))
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
        STAMP.pack_into(self.mm, slot * STAMP.size, clock())  # before the write
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
                self.sock.send(PART.pack(slot, n))
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
    mm = mmap.mmap(shm_fd, SLOTS * STAMP.size)
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
