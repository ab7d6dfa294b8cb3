"""The middlebox: a userspace bridge between two veths that delays, polices and counts.

It runs inside the middlebox namespace (``python -m throttle_lab.emu.testbed relay``
under ``ip netns exec``), where the two veths have no addresses and nothing routes: the
only path between client and server is this process. Each frame is read from an
``AF_PACKET`` socket (``ETH_P_ALL``, so ARP passes too), shown to the
:class:`~throttle_lab.emu.testbed.FrameHook` at its arrival, and, when the hook lets it
go, sent out of the other veth one one-way delay later. Policing at arrival and then
delaying is what a policer close to the subscriber does: the drop decision sees the
frames as the sender spaced them.

Timing: the kernel stamps each frame on arrival (``SO_TIMESTAMPNS``); the policer and
the delay count from that stamp, not from when this process got round to reading it.
Frames then wait in a heap of due times. The loop sleeps in ``select()`` until shortly
before the next due time and polls for the rest, and the process asks for SCHED_FIFO:
on a shared VM, waking from a sleep costs 0.1-2 ms, which polling and real-time
priority bring down to tens of microseconds. The lateness of every send is measured
and reported, so a run can show that the delay held.

Sending through the kernel's egress path means a qdisc on the veth (``tbf`` for the
shaper case) acts on what the relay sends; ``ENOBUFS`` from ``send()`` is that qdisc's
tail drop and is counted, not raised.

Control: one command a line on stdin (``stats``, ``reset``, ``stop``; EOF is ``stop``),
one JSON object a line on stdout (first ``{"type": "ready"}``). ``reset`` builds a fresh
hook (a full bucket) and zeroes the counters, so one relay serves repeated transfers.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import heapq
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from throttle_lab.emu.testbed._hooks import (
    Direction,
    FrameHook,
    HookFactory,
    ReportingHook,
)

__all__ = ["DirectionCounters", "Relay"]

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_PACKET_IGNORE_OUTGOING = 23
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33
# Big socket buffers: a slow-start burst arrives at veth speed, and a frame the kernel
# drops for want of receive buffer would be a loss no censor caused (they are counted
# as kernel_drops all the same).
_RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
_SEND_BUFFER_BYTES = 4 * 1024 * 1024
_MAX_FRAMES_PER_WAKEUP = 256
_PR_SET_PDEATHSIG = 1
_REALTIME_PRIORITY = 50
_SO_TIMESTAMPNS = 35
_ANCILLARY_BYTES = 64
# Sleep in select() until this long before the next due time, then poll: waking from a
# sleep takes 0.1-0.3 ms on this kind of VM even for a real-time process, polling does not.
_SPIN_GUARD_S = 0.0003


@dataclass(slots=True)
class DirectionCounters:
    """What happened to the frames of one direction (bytes are Ethernet frame bytes)."""

    frames_passed: int = 0
    bytes_passed: int = 0
    frames_dropped: int = 0
    bytes_dropped: int = 0
    frames_sent: int = 0
    tail_drops: int = 0  # ENOBUFS on send: the egress qdisc (tbf) dropped the frame
    send_errors: int = 0
    largest_frame_bytes: int = 0
    lateness_max_s: float = 0.0
    lateness_total_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        report = asdict(self)
        report["lateness_mean_s"] = (
            self.lateness_total_s / self.frames_sent if self.frames_sent else 0.0
        )
        return report


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the loop and report."""


class Relay:
    """Bridges ``client_ifname`` and ``server_ifname``; see the module docstring."""

    def __init__(
        self,
        client_ifname: str,
        server_ifname: str,
        *,
        one_way_delay_s: float,
        hook_factory: HookFactory,
        hook_kwargs: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if one_way_delay_s < 0:
            raise ValueError(f"one_way_delay_s must be >= 0, got {one_way_delay_s!r}")
        self.client_ifname = client_ifname
        self.server_ifname = server_ifname
        self.one_way_delay_s = one_way_delay_s
        self._hook_factory = hook_factory
        self._hook_kwargs = dict(hook_kwargs or {})
        self._clock = clock
        self.hook: FrameHook = hook_factory(now=clock(), **self._hook_kwargs)
        self.counters = {d: DirectionCounters() for d in Direction}
        self._kernel_drops = {client_ifname: 0, server_ifname: 0}
        self._due: list[tuple[float, int, int, bytes, Direction]] = []
        self._sequence = 0
        self._sockets: list[socket.socket] = []
        self.realtime = False

    # -- sockets -------------------------------------------------------------------
    def open(self) -> None:
        """Bind one AF_PACKET socket per veth (index 0: client side, 1: server side)."""
        for ifname in (self.client_ifname, self.server_ifname):
            # Protocol 0 at creation, ETH_P_ALL at bind: nothing from other interfaces
            # is queued in between.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RECEIVE_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, _SEND_BUFFER_BYTES)
            # Without this, every frame we send would come back to us as PACKET_OUTGOING.
            sock.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
            # The kernel stamps each frame on arrival: the delay and the policer count from
            # then, not from whenever this process got to read it.
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.bind((ifname, _ETH_P_ALL))
            sock.setblocking(False)
            self._sockets.append(sock)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    # -- frames --------------------------------------------------------------------
    def _receive(self, side: int) -> None:
        sock = self._sockets[side]
        direction = Direction.CLIENT_TO_SERVER if side == 0 else Direction.SERVER_TO_CLIENT
        counters = self.counters[direction]
        # Kernel receive stamps are CLOCK_REALTIME; map them onto our monotonic clock.
        realtime_offset = time.time() - self._clock()
        for _ in range(_MAX_FRAMES_PER_WAKEUP):
            try:
                frame, ancillary, _flags, address = sock.recvmsg(65536, _ANCILLARY_BYTES)
            except BlockingIOError:
                return
            if address[2] == socket.PACKET_OUTGOING:
                continue
            now = self._clock()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", data[:16])
                    now = min(now, seconds + nanoseconds * 1e-9 - realtime_offset)
            if self.hook.on_frame(direction, frame, now=now):
                counters.frames_passed += 1
                counters.bytes_passed += len(frame)
                counters.largest_frame_bytes = max(counters.largest_frame_bytes, len(frame))
                self._sequence += 1
                heapq.heappush(
                    self._due,
                    (now + self.one_way_delay_s, self._sequence, 1 - side, frame, direction),
                )
            else:
                counters.frames_dropped += 1
                counters.bytes_dropped += len(frame)

    def _send_due(self) -> None:
        while self._due and self._due[0][0] <= self._clock():
            due, _, side, frame, direction = heapq.heappop(self._due)
            counters = self.counters[direction]
            try:
                self._sockets[side].send(frame)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    counters.tail_drops += 1
                else:
                    counters.send_errors += 1
                continue
            lateness = self._clock() - due
            counters.frames_sent += 1
            counters.lateness_total_s += lateness
            counters.lateness_max_s = max(counters.lateness_max_s, lateness)

    # -- reporting and control -----------------------------------------------------
    def _collect_kernel_drops(self) -> None:
        for ifname, sock in zip(
            (self.client_ifname, self.server_ifname), self._sockets, strict=True
        ):
            # struct tpacket_stats {u32 packets, u32 drops}; reading it resets it.
            raw = sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
            self._kernel_drops[ifname] += struct.unpack("II", raw)[1]

    def report(self) -> dict[str, Any]:
        """Counters so far, JSON-ready."""
        self._collect_kernel_drops()
        report: dict[str, Any] = {
            "type": "stats",
            "one_way_delay_s": self.one_way_delay_s,
            "realtime": self.realtime,
            "in_flight_frames": len(self._due),
            "kernel_drops": dict(self._kernel_drops),
        }
        for direction, counters in self.counters.items():
            report[direction.value] = counters.as_dict()
        if isinstance(self.hook, ReportingHook):
            report["hook"] = self.hook.report()
        return report

    def reset(self) -> None:
        """A fresh hook (full buckets) and zero counters; frames in flight still leave."""
        self.hook = self._hook_factory(now=self._clock(), **self._hook_kwargs)
        self.counters = {d: DirectionCounters() for d in Direction}
        self._collect_kernel_drops()
        self._kernel_drops = dict.fromkeys(self._kernel_drops, 0)

    def serve(self, control_fd: int, out: TextIO) -> None:
        """Relay until ``stop``, EOF on ``control_fd`` or SIGTERM; then report once more."""

        def emit(message: dict[str, Any]) -> None:
            out.write(json.dumps(message, sort_keys=True) + "\n")
            out.flush()

        def on_sigterm(signum: int, frame: object) -> None:
            raise _Stop

        signal.signal(signal.SIGTERM, on_sigterm)
        os.set_blocking(control_fd, False)
        pending = b""
        emit({"type": "ready", "pid": os.getpid(), "realtime": self.realtime})
        socket_fds = [sock.fileno() for sock in self._sockets]
        watched = [*socket_fds, control_fd]
        try:
            while True:
                timeout = None
                if self._due:
                    timeout = max(0.0, self._due[0][0] - self._clock() - _SPIN_GUARD_S)
                readable, _, _ = select.select(watched, [], [], timeout)
                for side, fd in enumerate(socket_fds):
                    if fd in readable:
                        self._receive(side)
                self._send_due()
                if control_fd in readable:
                    chunk = os.read(control_fd, 4096)
                    if not chunk:
                        return
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        command = line.decode(errors="replace").strip()
                        if command == "stop":
                            return
                        if command == "reset":
                            self.reset()
                            emit({"type": "reset"})
                        elif command == "stats":
                            emit(self.report())
                        elif command:
                            emit({"type": "error", "message": f"unknown command {command!r}"})
        except _Stop:
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                emit(self.report())


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent goes (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def use_realtime_scheduling() -> bool:
    """Ask for SCHED_FIFO so that a due frame preempts ordinary processes at once.

    On a shared 2-core machine an ordinary process wakes from ``select()`` a few hundred
    microseconds to milliseconds late when the CPUs are busy; a real-time one wakes in
    tens of microseconds. The relay blocks between frames, so it cannot hog a CPU, and
    the kernel's RT throttling caps it anyway. Returns whether it worked.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(_REALTIME_PRIORITY))
    except (OSError, AttributeError):
        return False
    return True


def run_relay(
    client_ifname: str,
    server_ifname: str,
    *,
    one_way_delay_s: float,
    hook_factory: HookFactory,
    hook_kwargs: dict[str, Any],
) -> None:
    """Entry point of the relay process (see ``__main__``)."""
    die_with_parent()
    # Ctrl-C reaches the whole process group; the parent cleans up and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    relay = Relay(
        client_ifname,
        server_ifname,
        one_way_delay_s=one_way_delay_s,
        hook_factory=hook_factory,
        hook_kwargs=hook_kwargs,
    )
    relay.realtime = use_realtime_scheduling()
    relay.open()
    try:
        relay.serve(sys.stdin.fileno(), sys.stdout)
    finally:
        relay.close()
