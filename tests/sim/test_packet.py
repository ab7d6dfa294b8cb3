"""The packet-level model: physics that must hold whatever the calibration."""

from __future__ import annotations

from dataclasses import replace

import pytest

from throttle_lab.sim import FlowSpec, Throttle, simulate_flow

RTT = 0.06


@pytest.mark.parametrize(("tls", "round_trips"), [("none", 2), ("1.3", 3), ("1.2", 4)])
def test_unthrottled_ttfb_counts_handshake_round_trips(tls: str, round_trips: int) -> None:
    # SYN/SYN-ACK, then one round trip per TLS flight, then request/response.
    result = simulate_flow(FlowSpec(10_000, RTT, tls=tls))  # type: ignore[arg-type]
    assert result.outcome == "ok"
    assert result.ttfb_s == pytest.approx(round_trips * RTT)
    assert result.drops == result.retransmits == 0


def test_slow_start_doubles_per_round_trip() -> None:
    # IW10 = 14480 bytes in the first round, then 20, 40 ... segments: 400 KB needs
    # 10+20+40+80+160 = 310 segments < 400000/1448 = 277 -> five data rounds.
    result = simulate_flow(FlowSpec(400_000, RTT, tls="none"))
    assert result.total_s == pytest.approx(RTT + 5 * RTT, abs=0.01)


def test_policed_goodput_cannot_beat_burst_plus_rate() -> None:
    throttle = Throttle("police", 140_000, 16_000)
    result = simulate_flow(FlowSpec(400_000, RTT, throttle))
    wire_bytes_per_payload = 1500 / 1448
    ceiling = (16_000 + 140_000 / 8 * result.total_s) / wire_bytes_per_payload
    assert ceiling >= 400_000
    assert result.drops > 0 and result.retransmits >= result.drops // 2
    # A 400 KB photo at 140 kbit/s needs at least 23 s of policed time (domain.md).
    assert result.total_s > 400_000 * 8 / 140_000 - 16_000 * 8 / 140_000


def test_shaper_with_deep_queue_does_not_drop_and_adds_delay() -> None:
    shaped = simulate_flow(FlowSpec(200_000, RTT, Throttle("shape", 1e6, 16_000, 10**7)))
    assert shaped.drops == 0
    assert shaped.total_s >= 200_000 * 8 / 1e6


def test_a_small_bucket_hurts_a_policed_flow_not_a_shaped_one() -> None:
    # Flach et al.: with a small bucket, policed TCP gets well below the rate; a shaper
    # at the same rate and bucket delivers close to it.
    spec = FlowSpec(250_000, 0.1, Throttle("police", 1e6, 4_000), tls="none")
    policed = simulate_flow(spec)
    shaped = simulate_flow(replace(spec, throttle=Throttle("shape", 1e6, 4_000, 64_000)))
    assert policed.goodput_bps < 0.5e6
    assert shaped.goodput_bps > 0.8e6 * 1448 / 1500


def test_same_seed_same_result_and_loss_uses_the_seed() -> None:
    spec = FlowSpec(300_000, RTT, loss=0.02, seed=7)
    first, second = simulate_flow(spec), simulate_flow(spec)
    assert first == second
    other = simulate_flow(replace(spec, seed=8))
    assert (other.total_s, other.drops) != (first.total_s, first.drops)


def test_reno_and_cubic_both_finish_and_differ_under_loss() -> None:
    spec = FlowSpec(1_000_000, 0.1, Throttle("police", 1e6, 16_000), tls="none")
    cubic, reno = simulate_flow(spec), simulate_flow(replace(spec, cc="reno"))
    assert cubic.outcome == reno.outcome == "ok"
    assert cubic.total_s != reno.total_s


def test_access_link_rate_limits_an_unthrottled_flow() -> None:
    result = simulate_flow(FlowSpec(1_000_000, 0.02, bandwidth_bps=2e6, tls="none"))
    assert result.goodput_bps < 2e6
    assert result.goodput_bps > 0.8 * 2e6 * 1448 / 1500


def test_upload_is_policed_on_the_way_up() -> None:
    throttle = Throttle("police", 140_000, 16_000, directions="up")
    up = simulate_flow(FlowSpec(200_000, RTT, throttle, upload=True))
    down = simulate_flow(FlowSpec(200_000, RTT, throttle))
    assert up.total_s > 5 * down.total_s
    assert down.drops == 0


def test_time_limit_gives_a_timeout_outcome() -> None:
    spec = FlowSpec(1_000_000, RTT, Throttle("police", 64_000, 4_000), time_limit_s=5.0)
    result = simulate_flow(spec)
    assert result.outcome == "timeout"
    assert result.goodput_bps == 0.0
    assert result.samples and result.samples[-1][1] < 1_000_000


def test_samples_are_cumulative_and_end_at_the_size() -> None:
    result = simulate_flow(FlowSpec(100_000, RTT, Throttle("police", 500_000, 16_000)))
    times = [t for t, _ in result.samples]
    sizes = [b for _, b in result.samples]
    assert times == sorted(times) and sizes == sorted(sizes)
    assert sizes[-1] == 100_000
    assert times[-1] == result.total_s


@pytest.mark.parametrize("bad", [FlowSpec(0, RTT), FlowSpec(10, -1.0)])
def test_nonsense_specs_are_refused(bad: FlowSpec) -> None:
    with pytest.raises(ValueError):
        simulate_flow(bad)
