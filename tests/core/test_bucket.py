"""Token bucket, policer and shaper: literal times, and the conformance property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from throttle_lab.core import Policer, Shaper, TokenBucket


def test_bucket_starts_full_and_refills_at_rate() -> None:
    bucket = TokenBucket(rate_bps=8000, burst_bytes=1000, now=0.0)  # 1000 bytes/s
    assert bucket.try_consume(1000, now=0.0)
    assert not bucket.try_consume(1, now=0.0)
    assert bucket.tokens(now=0.5) == pytest.approx(500)
    assert bucket.try_consume(500, now=0.5)
    assert bucket.tokens(now=10.0) == 1000  # capped at the burst


def test_time_until_and_oversized_packets() -> None:
    bucket = TokenBucket(rate_bps=8000, burst_bytes=1000)
    bucket.try_consume(1000, now=0.0)
    assert bucket.time_until(250, now=0.0) == pytest.approx(0.25)
    assert bucket.time_until(1001, now=0.0) == float("inf")


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate_bps"):
        TokenBucket(rate_bps=0, burst_bytes=1)
    with pytest.raises(ValueError, match="burst_bytes"):
        TokenBucket(rate_bps=1, burst_bytes=0)


def test_policer_drops_over_rate_as_in_the_2021_report() -> None:
    # Censored Planet's worked example: 16 KB pass in the first 100 ms, then drops.
    policer = Policer(rate_bps=128_000, burst_bytes=16_000)
    passed = sum(policer.admit(1500, now=i * 0.001) for i in range(100))  # 150 KB in 100 ms
    # 16 KB of burst plus 100 ms at 16 KB/s = 1.6 KB: 11 or 12 full packets.
    assert passed * 1500 <= 16_000 + 128_000 / 8 * 0.1
    assert passed >= 10
    assert policer.dropped_packets == 100 - passed
    assert policer.dropped_bytes == (100 - passed) * 1500


def test_shaper_delays_instead_of_dropping() -> None:
    shaper = Shaper(rate_bps=8000, burst_bytes=1000, queue_bytes=10_000)
    departures = [shaper.admit(500, now=0.0) for _ in range(5)]
    # Two leave on the burst, the rest wait: one every 0.5 s (500 bytes at 1000 bytes/s).
    assert departures == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5])
    assert shaper.queued_bytes(now=0.0) == 1500
    assert shaper.queued_bytes(now=1.0) == 500
    assert shaper.dropped_packets == 0


def test_shaper_tail_drops_when_queue_full() -> None:
    shaper = Shaper(rate_bps=8000, burst_bytes=1000, queue_bytes=1000)
    departures = [shaper.admit(500, now=0.0) for _ in range(6)]
    # Two leave on the burst; the queue then holds 1000 bytes; the rest is dropped.
    assert departures == pytest.approx([0.0, 0.0, 0.5, 1.0, None, None])
    assert shaper.dropped_packets == 2 and shaper.dropped_bytes == 1000
    assert shaper.admit(5000, now=0.0) is None  # larger than the bucket: never conforms
    assert shaper.admit(500, now=0.5) == pytest.approx(1.5)  # room again once one left


def test_shaper_idle_refill_then_burst() -> None:
    shaper = Shaper(rate_bps=8000, burst_bytes=500, queue_bytes=10_000)
    assert shaper.admit(500, now=0.0) == 0.0
    assert shaper.admit(500, now=10.0) == 10.0  # the bucket refilled while idle
    assert shaper.admit(500, now=10.0) == pytest.approx(10.5)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=1e3, max_value=1e8),
    burst=st.integers(min_value=1500, max_value=200_000),
    arrivals=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=0.05), st.integers(min_value=40, max_value=1500)
        ),
        min_size=1,
        max_size=300,
    ),
)
def test_policer_never_passes_more_than_burst_plus_rate_times_t(
    rate: float, burst: int, arrivals: list[tuple[float, int]]
) -> None:
    policer = Policer(rate, burst)
    now = 0.0
    passed: list[tuple[float, int]] = []
    for gap, size in arrivals:
        now += gap
        if policer.admit(size, now=now):
            passed.append((now, size))
    # Over every interval [t_i, t_j] of passed packets: bytes <= burst + rate/8 * (t_j - t_i).
    for i in range(len(passed)):
        total = 0
        for j in range(i, len(passed)):
            total += passed[j][1]
            assert total <= burst + rate / 8 * (passed[j][0] - passed[i][0]) + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(min_value=1e3, max_value=1e7),
    burst=st.integers(min_value=1500, max_value=50_000),
    sizes=st.lists(st.integers(min_value=40, max_value=1500), min_size=1, max_size=100),
)
def test_shaper_output_conforms_and_keeps_order(rate: float, burst: int, sizes: list[int]) -> None:
    shaper = Shaper(rate, burst, queue_bytes=10**9)
    departures = []
    for i, size in enumerate(sizes):
        departure = shaper.admit(size, now=i * 0.001)
        assert departure is not None and departure >= i * 0.001
        departures.append(departure)
    assert departures == sorted(departures)
    for i in range(len(sizes)):
        total = 0
        for j in range(i, len(sizes)):
            total += sizes[j]
            assert total <= burst + rate / 8 * (departures[j] - departures[i]) + 1e-6
