"""What the middlebox decides per frame: the pluggable part of the relay.

The relay (``_relay.py``) moves frames and keeps time; a :class:`FrameHook` says, for each
frame at its arrival, whether it goes on. The hook is built in the relay's own process
from a *factory* named ``"module:attribute"`` plus JSON keyword arguments, so a later
device (per-flow state, ClientHello inspection, a bucket per direction) plugs in without
touching the relay: ``factory(now=..., **kwargs) -> FrameHook``.

A hook that needs more than pass-or-drop also has ``judge()`` (:class:`VerdictHook`):
its :class:`FrameVerdict` can hold a frame until a later time (shaping) and make the
relay send frames of its own (the RSTs of a RESET action). The SNI-aware device,
``_device_hook.DeviceHook``, is one.

The policer here counts the **IP packet length** (the IPv4 header's total-length field),
not the Ethernet frame: a full TCP segment is 1448 payload + 52 header = 1500 bytes, as
in the packet model. Linux ``act_police`` on egress would count the 1514-byte frame;
the model and this testbed agree with each other instead. Frames that are not IPv4
(ARP above all) pass unpoliced: a per-flow censor polices TCP flows, and an ARP reply
lost in a drop burst would stall the testbed in a way no real path does.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from throttle_lab.core import Policer
from throttle_lab.errors import TestbedError

__all__ = [
    "DROP",
    "PASS",
    "Direction",
    "FrameHook",
    "FrameVerdict",
    "HookFactory",
    "PassHook",
    "PolicerHook",
    "ReportingHook",
    "VerdictHook",
    "ipv4_packet_length",
    "load_hook_factory",
    "pass_hook",
    "policer_hook",
]

_ETHERTYPE_IPV4 = 0x0800
_ETH_HEADER_BYTES = 14


class Direction(enum.Enum):
    """Which way a frame travels through the middlebox."""

    CLIENT_TO_SERVER = "c2s"
    SERVER_TO_CLIENT = "s2c"


@runtime_checkable
class FrameHook(Protocol):
    """Decides per frame, at its arrival in the middlebox. Must never raise on any bytes."""

    def on_frame(self, direction: Direction, frame: bytes, *, now: float) -> bool:
        """True: forward ``frame`` (after the configured delay). False: drop it."""
        ...


@runtime_checkable
class ReportingHook(FrameHook, Protocol):
    """A hook that also has counters of its own for the relay's stats report."""

    def report(self) -> dict[str, Any]:
        """JSON-ready counters, reported under ``"hook"``."""
        ...


@dataclass(frozen=True, slots=True)
class FrameVerdict:
    """What the relay does with one frame.

    ``forward``: send it on, not before ``send_at`` (a shaper's departure time, on the
    relay's clock; ``None`` is now), then after the path's delay. ``inject``: frames the
    middlebox sends of its own, each toward the side its direction names, over the same
    path as a forwarded frame would take.
    """

    forward: bool
    send_at: float | None = None
    inject: tuple[tuple[Direction, bytes], ...] = ()


PASS = FrameVerdict(True)
DROP = FrameVerdict(False)


@runtime_checkable
class VerdictHook(Protocol):
    """A hook whose answer is a :class:`FrameVerdict`; the relay prefers ``judge``."""

    def judge(self, direction: Direction, frame: bytes, *, now: float) -> FrameVerdict:
        """Never raises on any bytes."""
        ...


HookFactory = Callable[..., FrameHook]
"""``factory(*, now: float, **kwargs) -> FrameHook``; ``now`` is the relay's clock."""


def ipv4_packet_length(frame: bytes) -> int | None:
    """The IPv4 total length of an Ethernet frame, or ``None`` when it is not IPv4."""
    if len(frame) < _ETH_HEADER_BYTES + 4:
        return None
    if int.from_bytes(frame[12:14], "big") != _ETHERTYPE_IPV4:
        return None
    return int.from_bytes(frame[16:18], "big")


class PassHook:
    """Forwards everything: the unthrottled path (and the shaper case, where tbf acts)."""

    def on_frame(self, direction: Direction, frame: bytes, *, now: float) -> bool:
        return True


class PolicerHook:
    """A token-bucket policer on one direction's IPv4 packets (server->client by default)."""

    def __init__(
        self,
        rate_bps: float,
        burst_bytes: int,
        *,
        now: float,
        direction: Direction = Direction.SERVER_TO_CLIENT,
    ) -> None:
        self.policer = Policer(rate_bps, burst_bytes, now=now)
        self.direction = direction

    def on_frame(self, direction: Direction, frame: bytes, *, now: float) -> bool:
        if direction is not self.direction:
            return True
        ip_length = ipv4_packet_length(frame)
        if ip_length is None:
            return True
        return self.policer.admit(ip_length, now=now)

    def report(self) -> dict[str, Any]:
        return {
            "policed_direction": self.direction.value,
            "rate_bps": self.policer.bucket.rate_bps,
            "burst_bytes": self.policer.bucket.burst_bytes,
            "passed_ip_bytes": self.policer.passed_bytes,
            "dropped_ip_bytes": self.policer.dropped_bytes,
            "dropped_packets": self.policer.dropped_packets,
        }


def pass_hook(*, now: float) -> FrameHook:
    """Factory of :class:`PassHook` (the default)."""
    return PassHook()


def policer_hook(
    *, now: float, rate_bps: float, burst_bytes: int, direction: str = "s2c"
) -> FrameHook:
    """Factory of :class:`PolicerHook`; ``direction`` is ``'s2c'`` or ``'c2s'``."""
    return PolicerHook(rate_bps, burst_bytes, now=now, direction=Direction(direction))


def load_hook_factory(spec: str) -> HookFactory:
    """``'package.module:attribute'`` -> the callable it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise TestbedError(f"hook factory {spec!r}: expected 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise TestbedError(f"hook factory {spec!r} cannot be loaded: {exc}") from exc
    if not callable(factory):
        raise TestbedError(f"hook factory {spec!r} is not callable")
    return cast(HookFactory, factory)
