"""A TCP sender and receiver that behave like Linux 6.x, as sans-I/O state machines.

This is the packet-level model's heart and the reference the fast engines are calibrated
against, so it copies the Linux mechanisms that decide completion time behind a
policer (drop bursts, then silence):

- sender: IW10, slow start, CUBIC or Reno, SACK scoreboard, RACK loss detection
  (reordering window ``min_rtt/4``, 0 in recovery or after 3 SACKed segments), Tail Loss
  Probe (PTO = 2·SRTT, +200 ms with one segment out), Proportional Rate Reduction in
  recovery, RTO = SRTT + max(4·RTTVAR, 200 ms) with exponential back-off, and on a
  timeout: cwnd 1, everything not SACKed marked lost, CUBIC reset;
- receiver: quick ACKs for the first 16 segments and after long gaps, then one ACK per
  two full segments or after a 40 ms delayed-ACK timer; immediate ACKs (with up to three
  SACK blocks, newest first) while there is out-of-order data; RFC 7323 timestamp echo.

Sequence numbers are byte offsets in one direction's stream. Times are seconds. Not
modelled: Nagle, receive-window limits, F-RTO/Eifel undo, ECN, pacing (CUBIC without
``fq`` does not pace).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from throttle_lab.core._congestion import CongestionControl

__all__ = [
    "HEADER_BYTES",
    "INITIAL_RTO_S",
    "MIN_RTO_S",
    "MSS_BYTES",
    "SYN_BYTES",
    "Receiver",
    "Sender",
    "SenderState",
]

MSS_BYTES = 1448  # payload per full segment with timestamps on a 1500-byte MTU
HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps option 12
SYN_BYTES = 60  # IPv4 20 + TCP 20 + MSS, SACK-permitted, timestamps, window scale
MIN_RTO_S = 0.2
MAX_RTO_S = 120.0
INITIAL_RTO_S = 1.0
INITIAL_CWND = 10
QUICKACKS = 16
DELACK_MIN_S = 0.04


class SenderState(enum.Enum):
    OPEN = "open"
    RECOVERY = "recovery"
    LOSS = "loss"


@dataclass(slots=True)
class _Segment:
    start: int
    end: int
    sent_at: float
    retransmitted: bool = False
    sacked: bool = False
    lost: bool = False  # marked lost and not yet retransmitted


class Sender:
    """One direction's sending side. Drive it with ``write``, ``on_ack``, ``poll_transmit``
    and ``handle_timer``; it never sends by itself."""

    def __init__(self, cc: CongestionControl, *, mss: int = MSS_BYTES) -> None:
        self.cc = cc
        self.mss = mss
        self.cwnd = float(INITIAL_CWND)
        self.ssthresh = math.inf
        self.state = SenderState.OPEN
        self.snd_una = 0
        self.snd_nxt = 0
        self.write_end = 0
        self._segs: deque[_Segment] = deque()
        self._sacked_out = 0
        self._lost_out = 0
        self._high_seq = 0
        # RTT estimation (RFC 6298 with Linux's floor on the variance term).
        self.srtt: float | None = None
        self._rttvar = 0.0
        self.min_rtt = math.inf
        self._backoff = 0
        # RACK: the send time and RTT of the most recently sent segment known delivered.
        self._rack_sent_at = -math.inf
        self._rack_rtt = 0.0
        # Proportional Rate Reduction.
        self._prr_delivered = 0
        self._prr_out = 0
        self._prior_cwnd = 0.0
        # Timers (absolute times or None).
        self._rto_at: float | None = None
        self._tlp_at: float | None = None
        self._reo_at: float | None = None
        self._tlp_high_seq: int | None = None
        self._tlp_was_retransmit = False
        self._probe_due = False
        self._cwnd_limited = False
        # Counters for results.
        self.segments_sent = 0
        self.retransmits = 0
        self.timeouts = 0
        self.probes = 0

    # -- bookkeeping ----------------------------------------------------------------------
    @property
    def rto(self) -> float:
        if self.srtt is None:
            base = INITIAL_RTO_S
        else:
            base = self.srtt + max(4.0 * self._rttvar, MIN_RTO_S)
        return float(min(base * 2.0**self._backoff, MAX_RTO_S))

    @property
    def in_flight(self) -> int:
        return len(self._segs) - self._sacked_out - self._lost_out

    @property
    def done(self) -> bool:
        """All written bytes were acknowledged."""
        return self.snd_una >= self.write_end

    def write(self, nbytes: int) -> None:
        """The application hands ``nbytes`` more bytes to send."""
        self.write_end += nbytes

    def seed_rtt(self, sample: float) -> None:
        """First RTT sample, from the handshake (Linux initialises SRTT from it)."""
        self._rtt_sample(sample)

    def _rtt_sample(self, rtt: float) -> None:
        rtt = max(rtt, 1e-6)
        self.min_rtt = min(self.min_rtt, rtt)
        if self.srtt is None:
            self.srtt = rtt
            self._rttvar = rtt / 2.0
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    # -- ACK processing -------------------------------------------------------------------
    def on_ack(self, ack: int, sack: tuple[tuple[int, int], ...], *, now: float) -> None:
        """Process one ACK (cumulative ``ack`` and SACK blocks) arriving at ``now``."""
        was_in_flight = self.in_flight
        delivered = 0
        newest_sent = -math.inf
        newest_retransmitted = False
        advanced = ack > self.snd_una
        while self._segs and self._segs[0].end <= ack:
            seg = self._segs.popleft()
            if seg.sacked:
                self._sacked_out -= 1
            else:
                delivered += 1
                if seg.lost:
                    self._lost_out -= 1
            if seg.sent_at > newest_sent:
                newest_sent, newest_retransmitted = seg.sent_at, seg.retransmitted
        if advanced:
            self.snd_una = ack
            self._backoff = 0
        for start, end in sack:
            for seg in self._segs:
                if seg.start >= end:
                    break
                if not seg.sacked and seg.start >= start and seg.end <= end:
                    seg.sacked = True
                    self._sacked_out += 1
                    delivered += 1
                    if seg.lost:
                        seg.lost = False
                        self._lost_out -= 1
                    if seg.sent_at > newest_sent:
                        newest_sent, newest_retransmitted = seg.sent_at, seg.retransmitted
        if delivered:
            rtt = now - newest_sent
            # A retransmitted segment acked faster than the minimum RTT was probably the
            # original's delivery: ignore it for RTT and RACK, as Linux does.
            if not (newest_retransmitted and rtt < self.min_rtt):
                self._rtt_sample(rtt)
                if newest_sent > self._rack_sent_at:
                    self._rack_sent_at, self._rack_rtt = newest_sent, rtt
        self._process_tlp_ack(ack, now=now)
        newly_lost = self._rack_detect_loss(now=now)
        self._update_state(delivered, newly_lost, advanced, was_in_flight, now=now)
        if advanced or delivered:
            self._arm_timers(now=now)

    def _process_tlp_ack(self, ack: int, *, now: float) -> None:
        if self._tlp_high_seq is None or ack < self._tlp_high_seq:
            return
        if self._tlp_was_retransmit and self.state is SenderState.OPEN:
            # The probe repaired a loss: reduce the window as for a fast recovery (CWR).
            self.ssthresh = self.cc.ssthresh_after_loss(self.cwnd, now=now)
            self.cwnd = max(self.ssthresh, 1.0)
        self._tlp_high_seq = None

    def _reo_wnd(self) -> float:
        if self.state is not SenderState.OPEN or self._sacked_out >= 3:
            return 0.0
        return min(self.min_rtt / 4.0, self.srtt or 0.0)

    def _rack_detect_loss(self, *, now: float) -> int:
        """Mark lost every segment sent well before one that was delivered."""
        self._reo_at = None
        if self._rack_sent_at == -math.inf:
            return 0
        reo_wnd = self._reo_wnd()
        newly_lost = 0
        for seg in self._segs:
            # The deque is in sequence order, not send order (retransmissions are newer).
            if seg.sacked or seg.lost or seg.sent_at >= self._rack_sent_at:
                continue
            deadline = seg.sent_at + self._rack_rtt + reo_wnd
            if now >= deadline:
                seg.lost = True
                self._lost_out += 1
                newly_lost += 1
            elif self._reo_at is None or deadline < self._reo_at:
                self._reo_at = deadline
        return newly_lost

    def _update_state(
        self, delivered: int, newly_lost: int, advanced: bool, was_in_flight: int, *, now: float
    ) -> None:
        if self.state is SenderState.RECOVERY and self.snd_una >= self._high_seq:
            self.state = SenderState.OPEN
            self.cwnd = max(min(self.cwnd, self.ssthresh), 1.0)
        elif self.state is SenderState.LOSS and self.snd_una >= self._high_seq:
            self.state = SenderState.OPEN
        if self.state is SenderState.OPEN and self._lost_out > 0:
            self._enter_recovery(now=now)
        if self.state is SenderState.RECOVERY:
            self._prr(delivered, newly_lost > 0, advanced)
        elif delivered and self._cwnd_limited:
            rtt = self._rack_rtt or (self.srtt or 0.0)
            if self.cwnd < self.ssthresh and self.cc.slow_start_exit(self.cwnd, now=now, rtt=rtt):
                self.ssthresh = self.cwnd
            self.cwnd = self.cc.on_ack(self.cwnd, self.ssthresh, delivered, now=now, rtt=rtt)

    def _enter_recovery(self, *, now: float) -> None:
        self.state = SenderState.RECOVERY
        self._prior_cwnd = self.cwnd
        self.ssthresh = self.cc.ssthresh_after_loss(self.cwnd, now=now)
        self._high_seq = self.snd_nxt
        self._prr_delivered = 0
        self._prr_out = 0
        self._tlp_at = None

    def _prr(self, delivered: int, newly_lost: bool, advanced: bool) -> None:
        """RFC 6937 as Linux's ``tcp_cwnd_reduction`` computes it."""
        self._prr_delivered += delivered
        ssthresh = int(self.ssthresh)  # Linux keeps windows in whole segments
        delta = ssthresh - self.in_flight
        if delta < 0:
            sndcnt = (
                math.ceil(self._prr_delivered * ssthresh / max(self._prior_cwnd, 1.0))
                - self._prr_out
            )
        elif advanced and not newly_lost:
            sndcnt = min(delta, max(self._prr_delivered - self._prr_out, delivered) + 1)
        else:
            sndcnt = min(delta, delivered)
        sndcnt = max(sndcnt, 0 if self._prr_out else 1)  # always one fast retransmit
        self.cwnd = float(self.in_flight + sndcnt)

    # -- timers -----------------------------------------------------------------------------
    def _arm_timers(self, *, now: float) -> None:
        if not self._segs:
            self._rto_at = self._tlp_at = self._reo_at = None
            return
        self._rto_at = now + self.rto
        self._schedule_tlp(now=now)

    def _schedule_tlp(self, *, now: float) -> None:
        """Linux ``tcp_schedule_loss_probe``: only in Open, with no SACKed data."""
        if (
            self.state is not SenderState.OPEN
            or self._sacked_out
            or self._tlp_high_seq is not None
            or self.srtt is None
        ):
            self._tlp_at = None
            return
        pto = 2.0 * self.srtt + (MIN_RTO_S if len(self._segs) == 1 else 0.002)
        deadline = now + pto
        self._tlp_at = min(deadline, self._rto_at) if self._rto_at is not None else deadline

    def get_timer(self) -> float | None:
        deadlines = [t for t in (self._rto_at, self._tlp_at, self._reo_at) if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, *, now: float) -> None:
        """Fire whichever timer is due: the RACK reorder timer, a TLP, or the RTO."""
        if self._reo_at is not None and now >= self._reo_at:
            if self._rack_detect_loss(now=now) and self.state is SenderState.OPEN:
                self._enter_recovery(now=now)
                self._prr(0, True, False)
            return
        tlp_first = self._rto_at is None or (self._tlp_at or math.inf) <= self._rto_at
        if self._tlp_at is not None and now >= self._tlp_at and tlp_first:
            self._tlp_at = None
            self._probe_due = True
            return
        if self._rto_at is not None and now >= self._rto_at:
            self._on_rto(now=now)

    def _on_rto(self, *, now: float) -> None:
        self.timeouts += 1
        if self.state is not SenderState.LOSS or self.snd_una >= self._high_seq:
            self.ssthresh = self.cc.ssthresh_after_loss(self.cwnd, now=now)
        self.cc.on_timeout()
        self.state = SenderState.LOSS
        self._high_seq = self.snd_nxt
        for i, seg in enumerate(self._segs):
            timed_out = now - seg.sent_at >= (self._rack_rtt or self.srtt or 0.0)
            if not seg.sacked and not seg.lost and (i == 0 or timed_out):
                seg.lost = True
                self._lost_out += 1
        self.cwnd = 1.0
        self._tlp_high_seq = None
        self._tlp_at = self._reo_at = None
        self._backoff += 1
        self._rto_at = now + self.rto

    # -- transmission -----------------------------------------------------------------------
    def poll_transmit(self, *, now: float) -> list[tuple[int, int, bool]]:
        """Segments to send now as ``(seq, length, is_retransmit)``, lowest lost first."""
        out: list[tuple[int, int, bool]] = []
        if self._probe_due:
            self._probe_due = False
            probe = self._probe(now=now)
            if probe is not None:
                out.append(probe)
        lost_scan = 0
        while self.in_flight < self.cwnd:
            seg = None
            if self._lost_out:
                while lost_scan < len(self._segs):
                    candidate = self._segs[lost_scan]
                    lost_scan += 1
                    if candidate.lost:
                        seg = candidate
                        break
            if seg is not None:
                seg.lost = False
                seg.retransmitted = True
                seg.sent_at = now
                self._lost_out -= 1
                self.retransmits += 1
                out.append((seg.start, seg.end - seg.start, True))
            elif self.snd_nxt < self.write_end:
                out.append(self._send_new(now=now))
            else:
                break
            if self.state is SenderState.RECOVERY:
                self._prr_out += 1
        self._cwnd_limited = self.in_flight >= self.cwnd and (
            self.snd_nxt < self.write_end or self._lost_out > 0
        )
        if out:
            self.segments_sent += len(out)
            if self._rto_at is None:
                self._rto_at = now + self.rto
            if self._tlp_at is None:
                self._schedule_tlp(now=now)
        return out

    def _send_new(self, *, now: float) -> tuple[int, int, bool]:
        length = min(self.mss, self.write_end - self.snd_nxt)
        seg = _Segment(self.snd_nxt, self.snd_nxt + length, now)
        self._segs.append(seg)
        self.snd_nxt += length
        return (seg.start, length, False)

    def _probe(self, *, now: float) -> tuple[int, int, bool] | None:
        """A Tail Loss Probe: new data if there is any, else the last segment again."""
        self.probes += 1
        if self.snd_nxt < self.write_end:
            self._tlp_was_retransmit = False
            probe = self._send_new(now=now)
        else:
            last = next((s for s in reversed(self._segs) if not s.sacked), None)
            if last is None:
                return None
            if last.lost:
                last.lost = False
                self._lost_out -= 1
            last.retransmitted = True
            last.sent_at = now
            self.retransmits += 1
            self._tlp_was_retransmit = True
            probe = (last.start, last.end - last.start, True)
        self._tlp_high_seq = self.snd_nxt
        self._rto_at = now + self.rto
        return probe


class Receiver:
    """One direction's receiving side: reassembly, delayed ACKs and SACK blocks."""

    def __init__(self) -> None:
        self.rcv_nxt = 0
        self._ooo: list[list[int]] = []  # merged [start, end) blocks above rcv_nxt
        self._recent: list[int] = []  # block starts, most recently touched first
        self._unacked_bytes = 0
        self._quick = 0
        self._ato = 0.0
        self._last_rcv: float | None = None
        self._delack_at: float | None = None
        self._ack_now = False
        self._ts_recent = 0.0
        self._last_ack_sent = 0
        self.srtt = 0.0  # the receiving host's own RTT estimate (caps the delayed ACK)
        self.rto = INITIAL_RTO_S

    def on_data(self, seq: int, length: int, ts_val: float, *, now: float) -> int:
        """Take a data segment; return how many new in-order bytes it made readable."""
        self._note_arrival(now)
        if seq <= self._last_ack_sent:
            self._ts_recent = ts_val  # RFC 7323: echo the oldest unacknowledged segment
        end = seq + length
        if end <= self.rcv_nxt:
            self._ack_now = True  # a duplicate: the sender is retransmitting
            self._quick = QUICKACKS
            return 0
        had_ooo = bool(self._ooo)
        if seq > self.rcv_nxt:
            self._insert_ooo(seq, end)
            self._ack_now = True
            return 0
        before = self.rcv_nxt
        self.rcv_nxt = end
        while self._ooo and self._ooo[0][0] <= self.rcv_nxt:
            block = self._ooo.pop(0)
            self._recent = [s for s in self._recent if s != block[0]]
            self.rcv_nxt = max(self.rcv_nxt, block[1])
        self._unacked_bytes += self.rcv_nxt - before
        if had_ooo or self._quick > 0 or self._unacked_bytes > MSS_BYTES:
            self._ack_now = True
        elif self._delack_at is None:
            max_ato = min(0.5, max(self.srtt, DELACK_MIN_S)) if self.srtt else 0.5
            self._delack_at = now + min(self._ato, max_ato)
        return self.rcv_nxt - before

    def _note_arrival(self, now: float) -> None:
        """Linux ``tcp_event_data_recv``: adapt the delayed-ACK timeout; quick-ACK mode."""
        if self._last_rcv is None:
            self._quick = QUICKACKS
            self._ato = DELACK_MIN_S
        else:
            gap = now - self._last_rcv
            if gap <= DELACK_MIN_S / 2:
                self._ato = self._ato / 2 + DELACK_MIN_S / 2
            elif gap < self._ato:
                self._ato = min(self._ato / 2 + gap, self.rto)
            elif gap > self.rto:
                self._quick = QUICKACKS
        self._last_rcv = now

    def _insert_ooo(self, start: int, end: int) -> None:
        blocks = [*self._ooo, [start, end]]
        blocks.sort()
        merged: list[list[int]] = []
        for block in blocks:
            if merged and block[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], block[1])
            else:
                merged.append(list(block))
        self._ooo = merged
        touched = next(b[0] for b in merged if b[0] <= start < b[1] or b[0] == start)
        self._recent = [touched, *(s for s in self._recent if s != touched)]
        starts = {b[0] for b in merged}
        self._recent = [s for s in self._recent if s in starts]

    def request_ack(self) -> None:
        """Send an ACK with the next packet (e.g. the handshake's final ACK)."""
        self._ack_now = True

    @property
    def wants_ack_now(self) -> bool:
        return self._ack_now

    def get_timer(self) -> float | None:
        return self._delack_at

    def handle_timer(self, *, now: float) -> None:
        if self._delack_at is not None and now >= self._delack_at:
            self._ack_now = True

    def make_ack(self) -> tuple[int, tuple[tuple[int, int], ...], float]:
        """``(ack, sack_blocks, ts_ecr)`` for the next outgoing packet; clears pending ACKs."""
        if self._quick > 0 and self._unacked_bytes:
            self._quick -= max(1, self._unacked_bytes // MSS_BYTES)
        self._ack_now = False
        self._delack_at = None
        self._unacked_bytes = 0
        self._last_ack_sent = self.rcv_nxt
        by_start = {b[0]: b for b in self._ooo}
        sack = tuple((by_start[s][0], by_start[s][1]) for s in self._recent[:3] if s in by_start)
        return self.rcv_nxt, sack, self._ts_recent
