"""Congestion control as Linux does it: Reno and CUBIC (with HyStart's delay test).

Windows are counted in segments (floats where Linux keeps a fractional counter), times
in seconds. Only what changes completion time through a policer is modelled: slow start,
congestion avoidance, the multiplicative decrease and CUBIC's reset on a timeout. The
constants are Linux's (``net/ipv4/tcp_cubic.c``): beta 717/1024, C = 0.4, fast
convergence on, HyStart's delay test from a window of 16 with an 8-sample minimum.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CongestionControl", "Cubic", "Reno", "make_congestion_control"]


class CongestionControl(Protocol):
    """What the sender asks of a congestion controller."""

    name: str

    def on_ack(self, cwnd: float, ssthresh: float, acked: int, *, now: float, rtt: float) -> float:
        """New cwnd after ``acked`` segments were delivered outside recovery."""

    def ssthresh_after_loss(self, cwnd: float, *, now: float) -> float:
        """The slow-start threshold to use after a loss is detected."""

    def on_timeout(self) -> None:
        """A retransmission timeout: forget the window history (CUBIC resets)."""

    def slow_start_exit(self, cwnd: float, *, now: float, rtt: float) -> bool:
        """True when a delay signal says slow start should end now (HyStart)."""


def _slow_start(cwnd: float, ssthresh: float, acked: int) -> tuple[float, int]:
    """Linux ``tcp_slow_start``: grow by one per acked segment up to ssthresh."""
    grown = min(cwnd + acked, ssthresh)
    return grown, acked - int(grown - cwnd)


class Reno:
    """NewReno's window rules: halve on loss, +1 segment per window in avoidance."""

    name = "reno"

    def __init__(self) -> None:
        self._acked_in_avoidance = 0.0

    def on_ack(self, cwnd: float, ssthresh: float, acked: int, *, now: float, rtt: float) -> float:
        if cwnd < ssthresh:
            cwnd, acked = _slow_start(cwnd, ssthresh, acked)
        self._acked_in_avoidance += acked
        while self._acked_in_avoidance >= cwnd and acked:
            self._acked_in_avoidance -= cwnd
            cwnd += 1
        return cwnd

    def ssthresh_after_loss(self, cwnd: float, *, now: float) -> float:
        return max(cwnd / 2.0, 2.0)

    def on_timeout(self) -> None:
        self._acked_in_avoidance = 0.0

    def slow_start_exit(self, cwnd: float, *, now: float, rtt: float) -> bool:
        return False


class Cubic:
    """Linux CUBIC: ``W(t) = C (t - K)^3 + W_max`` with the Reno-friendly floor."""

    name = "cubic"
    BETA = 717 / 1024
    C = 0.4
    HYSTART_LOW_WINDOW = 16
    HYSTART_MIN_SAMPLES = 8

    def __init__(self) -> None:
        self.last_max_cwnd = 0.0
        self.epoch_start: float | None = None
        self.origin = 0.0
        self.k = 0.0
        self.min_rtt = float("inf")
        self.ack_count = 0.0
        self.reno_cwnd = 0.0
        self._cnt_acc = 0.0
        # HyStart round state: the delay test compares each round's minimum RTT over its
        # first 8 samples with the flow's minimum.
        self._round_end_time: float | None = None
        self._round_samples = 0
        self._round_min = float("inf")
        self._found = False

    # -- avoidance --------------------------------------------------------------------
    def _update_target(self, cwnd: float, acked: int, now: float) -> float:
        """Segments to ack per +1 of cwnd (Linux's ``cnt``)."""
        self.ack_count += acked
        if self.epoch_start is None:
            self.epoch_start = now
            self.ack_count = acked
            self.reno_cwnd = cwnd
            if self.last_max_cwnd <= cwnd:
                self.k = 0.0
                self.origin = cwnd
            else:
                self.k = ((self.last_max_cwnd - cwnd) / self.C) ** (1.0 / 3.0)
                self.origin = self.last_max_cwnd
        rtt = self.min_rtt if self.min_rtt != float("inf") else 0.0
        t = now - self.epoch_start + rtt
        target = self.origin + self.C * (t - self.k) ** 3
        cnt = cwnd / (target - cwnd) if target > cwnd else 100.0 * cwnd
        if self.last_max_cwnd == 0 and cnt > 20:
            cnt = 20.0  # Linux: grow at least 5 % per RTT while there is no W_max yet
        # TCP-friendly region: never slower than a Reno flow would be.
        delta = cwnd * (8 * (1024 + 717) / 3 / (1024 - 717)) / 8
        while self.ack_count > delta:
            self.ack_count -= delta
            self.reno_cwnd += 1
        if self.reno_cwnd > cwnd:
            cnt = min(cnt, cwnd / (self.reno_cwnd - cwnd))
        return max(cnt, 2.0)

    def on_ack(self, cwnd: float, ssthresh: float, acked: int, *, now: float, rtt: float) -> float:
        self.min_rtt = min(self.min_rtt, rtt)
        if cwnd < ssthresh:
            cwnd, acked = _slow_start(cwnd, ssthresh, acked)
            if not acked:
                return cwnd
        cnt = self._update_target(cwnd, acked, now)
        self._cnt_acc += acked
        if self._cnt_acc >= cnt:
            increments = int(self._cnt_acc // cnt)
            self._cnt_acc -= increments * cnt
            cwnd += increments
        return cwnd

    def ssthresh_after_loss(self, cwnd: float, *, now: float) -> float:
        self.epoch_start = None
        # Fast convergence: give way to newer flows by remembering a lower maximum.
        if cwnd < self.last_max_cwnd:
            self.last_max_cwnd = cwnd * (1.0 + self.BETA) / 2.0
        else:
            self.last_max_cwnd = cwnd
        return max(cwnd * self.BETA, 2.0)

    def on_timeout(self) -> None:
        # Linux's bictcp_reset on entering the Loss state (min RTT is kept).
        self.last_max_cwnd = 0.0
        self.epoch_start = None
        self.origin = 0.0
        self.k = 0.0
        self.ack_count = 0.0
        self.reno_cwnd = 0.0
        self._cnt_acc = 0.0
        self._round_end_time = None
        self._found = False

    # -- HyStart (delay test only: at policed rates ACKs are never a tight train) --------
    def slow_start_exit(self, cwnd: float, *, now: float, rtt: float) -> bool:
        self.min_rtt = min(self.min_rtt, rtt)
        if self._found or cwnd < self.HYSTART_LOW_WINDOW:
            return False
        if self._round_end_time is None or now >= self._round_end_time:
            self._round_min = float("inf")
            self._round_samples = 0
            self._round_end_time = now + self.min_rtt
        if self._round_samples < self.HYSTART_MIN_SAMPLES:
            self._round_samples += 1
            self._round_min = min(self._round_min, rtt)
            if self._round_samples == self.HYSTART_MIN_SAMPLES:
                # Linux compares the round's minimum with the flow's minimum RTT.
                threshold = min(max(self.min_rtt / 8.0, 0.004), 0.016)
                if self._round_min >= self.min_rtt + threshold:
                    self._found = True
                    return True
        return False


def make_congestion_control(name: str) -> CongestionControl:
    """``'cubic'`` (Linux's default) or ``'reno'``."""
    if name == "cubic":
        return Cubic()
    if name == "reno":
        return Reno()
    raise ValueError(f"unknown congestion control {name!r}: expected 'cubic' or 'reno'")
