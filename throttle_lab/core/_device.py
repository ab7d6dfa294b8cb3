"""The throttling device (a TSPU box) as a per-packet state machine.

What it does is what Censored Planet and Xue et al. (IMC 2021) measured in 2021:

- state is per TCP connection and per direction of it: each throttled flow gets its own
  bucket for upload and for download;
- it reads the *first* data packet of each direction. A ClientHello whose SNI matches
  the policy throttles the flow. A TLS record that is not a triggering ClientHello (a
  ChangeCipherSpec, a decoy hello for another name), a truncated ClientHello, or HTTP/SOCKS
  proxy traffic makes it look at up to ``extra_inspection_packets`` more packets; an
  unparseable first packet of ``unparseable_limit_bytes`` (101) or more ends inspection;
- it never reassembles: a ClientHello split over two segments is never recognised;
- a flow idle for ``idle_timeout_s`` (10 min) is forgotten; FIN and RST do not clear it.

Drivers (the kernel testbed's relay, the emulating proxy, analysis) call
:meth:`Device.on_packet` and get a :class:`Verdict`. Sans-I/O: ``now=`` everywhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from throttle_lab.core._bucket import Policer, Shaper
from throttle_lab.core._clienthello import HelloKind, parse_client_hello
from throttle_lab.core._coverage import Subscriber
from throttle_lab.core._policy import (
    NO_ACTION,
    ActionKind,
    Decision,
    InspectionConfig,
    PolicySet,
)

__all__ = ["Device", "FlowDirection", "FlowState", "Verdict"]

_KEEP_LOOKING = frozenset({HelloKind.OTHER_TLS, HelloKind.TRUNCATED, HelloKind.PROXY})


class FlowDirection(StrEnum):
    UP = "up"  # subscriber -> server
    DOWN = "down"  # server -> subscriber


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one packet: forward it (at ``send_at`` if shaped), drop it, or
    reset the connection (RESET blocks send RSTs both ways and drop the packet)."""

    forward: bool
    send_at: float | None = None  # shaped packets: when they may leave
    reset: bool = False


FORWARD = Verdict(True)
DROP = Verdict(False)
RESET = Verdict(False, reset=True)


@dataclass(slots=True)
class FlowState:
    """What the device remembers about one connection."""

    subscriber: Subscriber
    first_seen: float
    last_seen: float
    inspecting: bool = True
    inspected: int = 0  # data packets looked at so far
    decision: Decision = field(default_factory=lambda: Decision(NO_ACTION))
    sni: str | None = None
    buckets: dict[FlowDirection, Policer | Shaper] = field(default_factory=dict)
    passed_bytes: int = 0
    dropped_packets: int = 0


class Device:
    """One box: a policy set, inspection rules, and a table of flows."""

    def __init__(self, policies: PolicySet, inspection: InspectionConfig | None = None) -> None:
        self.policies = policies
        self.inspection = inspection or InspectionConfig()
        self._flows: dict[Hashable, FlowState] = {}
        self.expired = 0

    def __len__(self) -> int:
        return len(self._flows)

    def flows(self) -> Iterator[tuple[Hashable, FlowState]]:
        yield from self._flows.items()

    def flow(self, key: Hashable) -> FlowState | None:
        return self._flows.get(key)

    def set_policies(self, policies: PolicySet) -> None:
        """Swap the policy set (flows already classified keep their decision, as on a
        real box where a rule change affects new connections)."""
        self.policies = policies

    # -- the per-packet path --------------------------------------------------------------
    def on_packet(
        self,
        key: Hashable,
        direction: FlowDirection,
        payload: bytes,
        size: int,
        subscriber: Subscriber,
        *,
        now: float,
        dst: str | None = None,
    ) -> Verdict:
        """Judge one packet of ``size`` bytes on the wire carrying ``payload``.

        ``key`` identifies the connection the same way for both directions (e.g. the
        5-tuple as seen from the subscriber).
        """
        flow = self._flows.get(key)
        if flow is not None and now - flow.last_seen > self.inspection.idle_timeout_s:
            del self._flows[key]  # forgotten: the next packet starts a new flow
            self.expired += 1
            flow = None
        if flow is None:
            flow = FlowState(subscriber, now, now)
            self._flows[key] = flow
        flow.last_seen = now
        if flow.inspecting and payload and self._inspects(direction):
            self._inspect(flow, payload, now=now, dst=dst)
        return self._act(flow, direction, size, now=now)

    def _inspects(self, direction: FlowDirection) -> bool:
        return direction is FlowDirection.UP or self.inspection.inspect_both_directions

    def _inspect(self, flow: FlowState, payload: bytes, *, now: float, dst: str | None) -> None:
        hello = parse_client_hello(payload)
        flow.inspected += 1
        if hello.kind is HelloKind.CLIENT_HELLO:
            decision = self.policies.decide(hello.sni, flow.subscriber, now=now, dst=dst)
            if decision.policy is not None:
                flow.decision, flow.sni = decision, hello.sni
                flow.inspecting = False
                self._arm(flow)
                return
            # A hello for another name (a decoy) does not end inspection: 2021's device
            # caught the real hello sent after a fake one.
        elif hello.kind is HelloKind.NOT_TLS:
            if hello.length >= self.inspection.unparseable_limit_bytes:
                flow.inspecting = False  # a long unparseable packet: not TLS, stop looking
                return
        elif hello.kind not in _KEEP_LOOKING:
            return
        if flow.inspected > self.inspection.extra_inspection_packets:
            flow.inspecting = False

    def _arm(self, flow: FlowState) -> None:
        action = flow.decision.action
        if action.kind in (ActionKind.POLICE, ActionKind.SHAPE):
            assert action.rate_bps is not None and action.burst_bytes is not None
            for direction in FlowDirection:
                if action.kind is ActionKind.POLICE:
                    flow.buckets[direction] = Policer(action.rate_bps, action.burst_bytes)
                else:
                    queue = action.queue_bytes or 0
                    flow.buckets[direction] = Shaper(action.rate_bps, action.burst_bytes, queue)

    def _act(self, flow: FlowState, direction: FlowDirection, size: int, *, now: float) -> Verdict:
        kind = flow.decision.action.kind
        verdict = FORWARD
        if kind is ActionKind.RESET:
            verdict = RESET
        elif kind is ActionKind.BLACKHOLE:
            verdict = DROP
        elif kind in (ActionKind.POLICE, ActionKind.SHAPE):
            bucket = flow.buckets[direction]
            if isinstance(bucket, Policer):
                verdict = FORWARD if bucket.admit(size, now=now) else DROP
            else:
                departure = bucket.admit(size, now=now)
                if departure is None:
                    verdict = DROP
                elif departure > now:
                    verdict = Verdict(True, send_at=departure)
        if verdict.forward:
            flow.passed_bytes += size
        else:
            flow.dropped_packets += 1
        return verdict

    # -- housekeeping -----------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When the oldest idle flow expires (drivers may sweep then; lookups also expire)."""
        if not self._flows:
            return None
        oldest = min(flow.last_seen for flow in self._flows.values())
        return oldest + self.inspection.idle_timeout_s

    def handle_timer(self, *, now: float) -> int:
        """Forget flows idle for longer than the timeout; return how many."""
        limit = self.inspection.idle_timeout_s
        stale = [key for key, flow in self._flows.items() if now - flow.last_seen > limit]
        for key in stale:
            del self._flows[key]
        self.expired += len(stale)
        return len(stale)
