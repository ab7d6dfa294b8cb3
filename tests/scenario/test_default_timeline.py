"""The 2021 timeline of the default scenario, checked at literal times (domain.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from throttle_lab.core import ActionKind, Subscriber
from throttle_lab.scenario import Scenario, load_scenario

DEFAULT = Path(__file__).parents[2] / "scenarios" / "russia-twitter-2021.toml"
MOBILE = Subscriber(1, "mobile", "mobile-op-1")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(DEFAULT)


def at(scenario: Scenario, text: str) -> float:
    return scenario.seconds_at(datetime.fromisoformat(text).replace(tzinfo=UTC))


def throttled(scenario: Scenario, sni: str, when: str, who: Subscriber = MOBILE) -> bool:
    decision = scenario.policies.decide(sni, who, now=at(scenario, when))
    return decision.throttled


def test_nothing_before_10_march(scenario: Scenario):
    assert not throttled(scenario, "pbs.twimg.com", "2021-03-09T23:59:59")
    assert throttled(scenario, "pbs.twimg.com", "2021-03-10T00:00:00")


def test_tco_collateral_on_10_march_gone_on_12_march(scenario: Scenario):
    for host in ("www.microsoft.com", "www.reddit.com", "rt.com", "raw.githubusercontent.com"):
        assert throttled(scenario, host, "2021-03-10T12:00:00"), host
        assert throttled(scenario, host, "2021-03-11T07:59:59"), host
        assert not throttled(scenario, host, "2021-03-11T08:00:00"), host
        assert not throttled(scenario, host, "2021-03-12T12:00:00"), host
    assert throttled(scenario, "t.co", "2021-03-12T12:00:00")  # the exact rule stays


def test_suffix_rule_until_2_april(scenario: Scenario):
    assert throttled(scenario, "throttletwitter.com", "2021-03-20T12:00:00")
    assert not throttled(scenario, "throttletwitter.com", "2021-04-10T12:00:00")
    assert throttled(scenario, "twitter.com", "2021-04-10T12:00:00")
    assert throttled(scenario, "api.twitter.com", "2021-04-10T12:00:00")


def test_mobile_photos_policed_on_1_may_and_after_17_may(scenario: Scenario):
    decision = scenario.policies.decide(
        "pbs.twimg.com", MOBILE, now=at(scenario, "2021-05-01T12:00:00")
    )
    assert decision.action.kind is ActionKind.POLICE
    assert decision.action.rate_bps == 140e3 and decision.action.burst_bytes == 16_000
    assert decision.rule == "*.twimg.com"
    assert throttled(scenario, "pbs.twimg.com", "2021-05-25T12:00:00")


def test_trailing_dot_and_control_traffic_escape(scenario: Scenario):
    assert not throttled(scenario, "pbs.twimg.com.", "2021-05-01T12:00:00")
    control = scenario.policies.decide(
        "sun9-1.userapi.com", MOBILE, now=at(scenario, "2021-05-01T12:00:00")
    )
    assert control.covered and not control.throttled


def fixed_line_population(scenario: Scenario, n: int, seed: int = 0):
    """Fixed-line subscribers placed on networks by their shares (what a population engine does)."""
    rng = np.random.default_rng(seed)
    networks = scenario.networks_of("fixed")
    shares = np.array([net.share for net in networks])
    picks = rng.choice(len(networks), size=n, p=shares / shares.sum())
    names = np.array([net.name for net in networks])[picks]
    return np.arange(n), np.full(n, "fixed"), names


def test_about_half_of_fixed_line_covered_all_in_marked_networks(scenario: Scenario):
    ids, classes, networks = fixed_line_population(scenario, 10_000)
    policy = scenario.policies["twitter-throttle"]
    mask = policy.covered_mask(ids, classes, networks, now=at(scenario, "2021-04-01T00:00:00"))
    marked = {net.name for net in scenario.networks_of("fixed") if net.tspu}
    assert set(networks[mask]) == marked
    assert not set(networks[~mask]) & marked
    assert abs(mask.mean() - 0.5) < 4 * np.sqrt(0.25 / 10_000)


def test_fixed_line_never_after_17_may(scenario: Scenario):
    ids, classes, networks = fixed_line_population(scenario, 2_000)
    policy = scenario.policies["twitter-throttle"]
    table = policy.coverage_table(ids, classes, networks)
    assert table.covered_at(at(scenario, "2021-05-16T23:59:59")).any()
    for when in ("2021-05-17T00:00:00", "2021-05-20T00:00:00", "2021-05-31T23:59:59"):
        assert not table.covered_at(at(scenario, when)).any()
    lucky = Subscriber(5, "fixed", "fixed-national-a")  # a marked network
    assert throttled(scenario, "pbs.twimg.com", "2021-05-16T12:00:00", lucky)
    assert not throttled(scenario, "pbs.twimg.com", "2021-05-17T12:00:00", lucky)


def test_change_times_mark_the_timeline(scenario: Scenario):
    days = [scenario.datetime_at(t).date().isoformat() for t, _ in scenario.change_times()]
    assert days == ["2021-03-10", "2021-03-10", "2021-03-11", "2021-04-02", "2021-05-17"]


def test_other_seed_same_marked_networks(scenario: Scenario):
    # Marks, not the hash, decide fixed-line networks: a different seed changes nothing.
    ids, classes, networks = fixed_line_population(scenario, 2_000)
    now = at(scenario, "2021-04-01T00:00:00")
    a = scenario.policy_set(seed=1)["twitter-throttle"].covered_mask(
        ids, classes, networks, now=now
    )
    b = scenario.policy_set(seed=2)["twitter-throttle"].covered_mask(
        ids, classes, networks, now=now
    )
    assert np.array_equal(a, b)
