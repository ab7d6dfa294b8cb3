"""The middlebox: a userspace bridge between veths that delays, polices and counts.

It runs with its sockets inside the middlebox namespace (as ``python -m
throttle_lab.emu.testbed relay`` under ``ip netns exec``, or in the scenario testbed's
daemon, which opens them there from the root namespace), where the veths have no
addresses and nothing routes: the only path between clients and server is this
process. Each frame is read from an ``AF_PACKET`` socket (``ETH_P_ALL``, so ARP passes
too), shown to the hook at its arrival, and, when the hook lets it go, sent out of the
other side one one-way delay later. Policing at arrival and then delaying is what a
policer close to the subscriber does: the drop decision sees the frames as the sender
spaced them.

Ports. There is one server-side veth and one or more client-side veths (one for the
fidelity testbed; one per device class in the scenario testbed). A frame from a client
port goes to the server; a frame from the server goes to the client port that owns its
destination MAC (learned from what each port sent), or to every client port when it is
a broadcast (ARP) or not yet known: a small learning bridge. Each client port has its
own one-way delay and random loss of IPv4 frames, the path of its device class; loss on
the way up strikes before the hook (the access link comes before the censor), on the
way down after it.

Hooks. A :class:`~throttle_lab.emu.testbed.FrameHook` says pass or drop; a
:class:`~throttle_lab.emu.testbed.VerdictHook` may also hold a frame until a later time
(shaping) and inject frames (the RSTs of a reset), which travel the same path as a
forwarded frame in their direction.

Timing: the kernel stamps each frame on arrival (``SO_TIMESTAMPNS``); the hook and the
delay count from that stamp, not from when this process got round to reading it.
Frames then wait in a heap of due times. The loop sleeps in ``select()`` until shortly
before the next due time and polls for the rest, and the process asks for SCHED_FIFO:
on a shared VM, waking from a sleep costs 0.1-2 ms, which polling and real-time
priority bring down to tens of microseconds. The lateness of every send is measured
and reported, so a run can show that the delay held.

Sending through the kernel's egress path means a qdisc on the veth (``tbf`` for the
shaper case or an access link) acts on what the relay sends; ``ENOBUFS`` from
``send()`` is that qdisc's tail drop and is counted, not raised.

Control (``_relay_control``): ``stats``, ``reset``, ``path``, ``stop``, on a pipe or a Unix
socket. ``reset`` builds a fresh hook (full buckets, no flows) and zeroes the counters,
so one relay serves repeated transfers.
"""

from __future__ import annotations

import errno
import heapq
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from throttle_lab.emu.testbed._hooks import (
    DROP,
    PASS,
    Direction,
    FrameVerdict,
    HookFactory,
    ReportingHook,
    VerdictHook,
)

__all__ = ["ClientPort", "DirectionCounters", "Relay"]

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
_SO_TIMESTAMPNS = 35
_ANCILLARY_BYTES = 64
# Sleep in select() until this long before the next due time, then poll: waking from a
# sleep takes 0.1-0.3 ms on this kind of VM even for a real-time process, polling does not.
_SPIN_GUARD_S = 0.0003
_IPV4 = b"\x08\x00"


@dataclass(slots=True)
class ClientPort:
    """A client-side veth of the relay and the path behind it (seconds, a probability)."""

    ifname: str
    one_way_delay_s: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not self.one_way_delay_s >= 0:
            raise ValueError(f"one_way_delay_s must be >= 0, got {self.one_way_delay_s!r}")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {self.loss!r}")


@dataclass(slots=True)
class DirectionCounters:
    """What happened to the frames of one direction (bytes are Ethernet frame bytes)."""

    frames_passed: int = 0
    bytes_passed: int = 0
    frames_dropped: int = 0
    bytes_dropped: int = 0
    frames_sent: int = 0
    frames_injected: int = 0  # forged by the hook (RSTs of a reset)
    access_losses: int = 0  # random loss of a client port's path
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


def _packet_socket() -> socket.socket:
    # Protocol 0 at creation, ETH_P_ALL at bind: nothing from other interfaces is queued
    # in between.
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


class Relay:
    """Bridges client ports and a server port; see the module docstring.

    ``Relay("tl-mc", "tl-ms", one_way_delay_s=...)`` is the two-port bridge; pass a list
    of :class:`ClientPort` for several. ``socket_factory`` makes each (unbound)
    ``AF_PACKET`` socket: the scenario testbed's daemon makes them inside the middlebox
    namespace from outside it.
    """

    def __init__(
        self,
        client_ports: str | Sequence[ClientPort],
        server_ifname: str,
        *,
        one_way_delay_s: float = 0.0,
        hook_factory: HookFactory,
        hook_kwargs: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        socket_factory: Callable[[], socket.socket] = _packet_socket,
        seed: int = 0,
    ) -> None:
        if isinstance(client_ports, str):
            client_ports = [ClientPort(client_ports, one_way_delay_s)]
        if not client_ports:
            raise ValueError("a relay needs at least one client port")
        self.client_ports = list(client_ports)
        self.server_ifname = server_ifname
        self._ifnames = [port.ifname for port in self.client_ports] + [server_ifname]
        self._server_side = len(self.client_ports)
        self._hook_factory = hook_factory
        self._hook_kwargs = dict(hook_kwargs or {})
        self._clock = clock
        self._socket_factory = socket_factory
        self._rng = np.random.default_rng(seed)
        self._install_hook()
        self.counters = {d: DirectionCounters() for d in Direction}
        self._kernel_drops = dict.fromkeys(self._ifnames, 0)
        self._mac_side: dict[bytes, int] = {}
        self._due: list[tuple[float, int, int, bytes, Direction]] = []
        self._sequence = 0
        self._sockets: list[socket.socket] = []
        self.realtime = False

    @property
    def client_ifname(self) -> str:
        return self.client_ports[0].ifname

    @property
    def one_way_delay_s(self) -> float:
        return self.client_ports[0].one_way_delay_s

    def _install_hook(self) -> None:
        hook = self._hook_factory(now=self._clock(), **self._hook_kwargs)
        self.hook = hook
        if isinstance(hook, VerdictHook):
            self._judge: Callable[[Direction, bytes, float], FrameVerdict] = (
                lambda direction, frame, now: hook.judge(direction, frame, now=now)
            )
        else:
            self._judge = lambda direction, frame, now: (
                PASS if hook.on_frame(direction, frame, now=now) else DROP
            )

    # -- sockets -------------------------------------------------------------------
    def open(self) -> None:
        """Bind one AF_PACKET socket per port (client ports first, the server's last)."""
        for ifname in self._ifnames:
            sock = self._socket_factory()
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
    def _lost_on_access(self, side: int, frame: bytes) -> bool:
        loss = self.client_ports[side].loss
        return loss > 0 and frame[12:14] == _IPV4 and float(self._rng.random()) < loss

    def _receive(self, side: int) -> None:
        sock = self._sockets[side]
        upward = side != self._server_side
        direction = Direction.CLIENT_TO_SERVER if upward else Direction.SERVER_TO_CLIENT
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
            if upward:
                self._mac_side[frame[6:12]] = side
                if self._lost_on_access(side, frame):
                    counters.access_losses += 1
                    continue
            verdict = self._judge(direction, frame, now)
            for injected_direction, injected in verdict.inject:
                self.counters[injected_direction].frames_injected += 1
                self._schedule(injected_direction, injected, now, injected=True)
            if verdict.forward:
                counters.frames_passed += 1
                counters.bytes_passed += len(frame)
                counters.largest_frame_bytes = max(counters.largest_frame_bytes, len(frame))
                leaves = now if verdict.send_at is None else max(now, verdict.send_at)
                self._schedule(direction, frame, leaves, injected=False)
            else:
                counters.frames_dropped += 1
                counters.bytes_dropped += len(frame)

    def _schedule(self, direction: Direction, frame: bytes, at: float, *, injected: bool) -> None:
        """Queue ``frame`` to leave after its path's delay (see the module docstring)."""
        if direction is Direction.CLIENT_TO_SERVER:
            side = self._mac_side.get(frame[6:12])
            delay = 0.0 if side is None else self.client_ports[side].one_way_delay_s
            self._push(at + delay, self._server_side, frame, direction)
            return
        side = self._mac_side.get(frame[0:6])
        targets = range(self._server_side) if side is None else (side,)
        for target in targets:
            if not injected and self._lost_on_access(target, frame):
                self.counters[direction].access_losses += 1
                continue
            self._push(at + self.client_ports[target].one_way_delay_s, target, frame, direction)

    def _push(self, due: float, side: int, frame: bytes, direction: Direction) -> None:
        self._sequence += 1
        heapq.heappush(self._due, (due, self._sequence, side, frame, direction))

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
        for ifname, sock in zip(self._ifnames, self._sockets, strict=False):
            # struct tpacket_stats {u32 packets, u32 drops}; reading it resets it.
            raw = sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
            self._kernel_drops[ifname] += struct.unpack("II", raw)[1]

    def report(self) -> dict[str, Any]:
        """Counters so far, JSON-ready."""
        self._collect_kernel_drops()
        report: dict[str, Any] = {
            "type": "stats",
            "one_way_delay_s": self.one_way_delay_s,
            "ports": [asdict(port) for port in self.client_ports],
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
        self._install_hook()
        self.counters = {d: DirectionCounters() for d in Direction}
        self._collect_kernel_drops()
        self._kernel_drops = dict.fromkeys(self._kernel_drops, 0)

    def set_path(self, ifname: str, one_way_delay_s: float, loss: float) -> None:
        """Change a client port's path; frames already queued keep their due time."""
        for index, port in enumerate(self.client_ports):
            if port.ifname == ifname:
                self.client_ports[index] = ClientPort(ifname, one_way_delay_s, loss)
                return
        raise ValueError(f"no client port {ifname!r}")

    def run_until(self, watched: dict[int, Callable[[], bool]]) -> None:
        """Relay frames, calling ``watched[fd]()`` when ``fd`` is readable; it returns
        True to stop."""
        socket_fds = [sock.fileno() for sock in self._sockets]
        all_fds = [*socket_fds, *watched]
        while True:
            timeout = None
            if self._due:
                timeout = max(0.0, self._due[0][0] - self._clock() - _SPIN_GUARD_S)
            readable, _, _ = select.select(all_fds, [], [], timeout)
            for side, fd in enumerate(socket_fds):
                if fd in readable:
                    self._receive(side)
            self._send_due()
            for fd in readable:
                if fd in watched and watched[fd]():
                    return
