"""The policy model: actions, coverage selection, rules and actions over time, decisions."""

from __future__ import annotations

import hashlib
import ipaddress
import math

import numpy as np
import pytest

from throttle_lab.core import (
    NO_ACTION,
    Action,
    ActionKind,
    Coverage,
    CoverageUnit,
    Decision,
    InspectionConfig,
    Policy,
    PolicyChange,
    PolicySet,
    RuleSet,
    Subscriber,
    selection_draw,
)

POLICE = Action(ActionKind.POLICE, rate_bps=140e3, burst_bytes=16_000)
DAY = 86400.0


def twitter_policy(**overrides: object) -> Policy:
    options: dict[str, object] = {
        "name": "twitter",
        "rules": RuleSet.parse(["*.twimg.com", "twitter.com", "*t.co*"]),
        "action": POLICE,
        "coverage": {"mobile": Coverage(1.0, start_s=4 * DAY)},
    }
    options.update(overrides)
    return Policy(**options)  # type: ignore[arg-type]


def mobile(sub_id: int = 1) -> Subscriber:
    return Subscriber(sub_id, "mobile", "op-1")


# ---- actions


@pytest.mark.parametrize(
    ("kind", "rate", "burst", "queue"),
    [
        ("police", None, 16_000, None),  # no rate
        ("police", 140e3, None, None),  # no burst
        ("police", 0.0, 16_000, None),  # zero rate
        ("shape", 140e3, 16_000, None),  # shaper without queue
        ("police", 140e3, 16_000, 1000),  # a policer has no queue
        ("reset", 140e3, None, None),  # reset takes no rate
        ("bogus", None, None, None),
    ],
)
def test_action_refuses_incomplete_or_extra_parameters(kind, rate, burst, queue):
    with pytest.raises(ValueError):
        Action(kind, rate, burst, queue)


def test_action_kinds_that_throttle():
    assert POLICE.throttles
    assert Action("shape", 140e3, 16_000, 64_000).throttles
    assert not Action(ActionKind.RESET).throttles
    assert not NO_ACTION.throttles
    assert Action("reset").kind is ActionKind.RESET  # plain strings become the enum


# ---- coverage


def test_selection_draw_is_uniform_looking_and_keyed_by_all_inputs():
    draws = [selection_draw(1, "p", f"subscriber:{i}") for i in range(2000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert abs(np.mean(draws) - 0.5) < 0.03
    assert selection_draw(1, "p", "subscriber:1") != selection_draw(2, "p", "subscriber:1")
    assert selection_draw(1, "p", "subscriber:1") != selection_draw(1, "q", "subscriber:1")


def test_selection_draw_is_a_fixed_function():
    # Pinned to blake2b: it must never change between versions or processes, or the
    # same scenario and seed would cover different subscribers.
    digest = hashlib.blake2b(b"7\x1fp\x1fsubscriber:42", digest_size=8).digest()
    assert selection_draw(7, "p", "subscriber:42") == int.from_bytes(digest, "big") / 2.0**64


def test_coverage_window_is_half_open():
    cov = Coverage(1.0, start_s=10.0, end_s=20.0)
    assert not cov.active_at(now=9.999)
    assert cov.active_at(now=10.0)
    assert cov.active_at(now=19.999)
    assert not cov.active_at(now=20.0)
    assert Coverage().active_at(now=-1e9)


@pytest.mark.parametrize(
    "kwargs",
    [{"fraction": 1.5}, {"fraction": -0.1}, {"prefix_length": 33}, {"start_s": 5, "end_s": 5}],
)
def test_coverage_refuses_bad_values(kwargs):
    with pytest.raises(ValueError):
        Coverage(**kwargs)


def test_prefix_units_group_neighbours():
    cov = Coverage(0.5, unit=CoverageUnit.PREFIX, prefix_length=24)
    a = Subscriber(1, "fixed", "isp", int(ipaddress.IPv4Address("10.1.2.3")))
    b = Subscriber(2, "fixed", "isp", int(ipaddress.IPv4Address("10.1.2.200")))
    c = Subscriber(3, "fixed", "isp", int(ipaddress.IPv4Address("10.1.3.1")))
    assert cov.unit_key(a) == cov.unit_key(b) == "prefix:10.1.2.0/24"
    assert cov.unit_key(c) == "prefix:10.1.3.0/24"
    with pytest.raises(ValueError):
        cov.unit_key(Subscriber(4, "fixed", "isp"))  # no address


def population(n: int = 10_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(n)
    classes = np.where(ids % 2 == 0, "mobile", "fixed")
    networks = np.array([f"isp-{i % 40}" for i in ids])
    return ids, classes, networks


def test_subscriber_fraction_within_binomial_error():
    policy = twitter_policy(coverage={"fixed": Coverage(0.3)})
    ids, classes, networks = population(20_000)
    mask = policy.covered_mask(ids, classes, networks, now=0.0)
    fixed = classes == "fixed"
    n = int(fixed.sum())
    share = mask[fixed].mean()
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)  # 4 sigma: fails 1 in 16,000
    assert not mask[~fixed].any()  # a class the policy does not name is never covered


def test_same_seed_same_set_other_seed_other_set():
    ids, classes, networks = population()
    sets = {}
    for seed in (1, 1, 2):
        policy = twitter_policy(coverage={"fixed": Coverage(0.5)}, seed=seed)
        sets.setdefault(seed, []).append(policy.covered_mask(ids, classes, networks, now=0.0))
    assert np.array_equal(sets[1][0], sets[1][1])
    assert not np.array_equal(sets[1][0], sets[2][0])
    assert abs(sets[1][0].sum() - sets[2][0].sum()) < 300  # same size, different members


def test_network_unit_covers_whole_networks_and_marks_win():
    marks = {"isp-0": True, "isp-1": False}
    policy = twitter_policy(
        coverage={"fixed": Coverage(0.5, unit=CoverageUnit.NETWORK)},
        network_marks=marks,
        seed=3,
    )
    ids, classes, networks = population()
    mask = policy.covered_mask(ids, classes, networks, now=0.0)
    fixed = classes == "fixed"
    for network in np.unique(networks[fixed]):
        rows = fixed & (networks == network)
        assert mask[rows].all() or not mask[rows].any(), network  # all or nothing
    assert mask[fixed & (networks == "isp-0")].all()
    assert not mask[fixed & (networks == "isp-1")].any()
    # A mark wins even against fraction 0 and 1.
    none = twitter_policy(
        coverage={"fixed": Coverage(0.0, unit="network")}, network_marks={"isp-0": True}
    )
    assert none.is_selected(Subscriber(0, "fixed", "isp-0"))
    assert not none.is_selected(Subscriber(0, "fixed", "isp-2"))


@pytest.mark.parametrize("unit", ["subscriber", "network", "prefix"])
def test_vectorised_coverage_agrees_with_scalar(unit):
    policy = twitter_policy(
        coverage={
            "fixed": Coverage(0.4, unit=unit, start_s=100.0, end_s=200.0),
            "mobile": Coverage(0.7, unit=unit),
        },
        network_marks={"isp-5": True},
        seed=11,
    )
    ids, classes, networks = population(3000)
    addresses = (10 << 24) + ids * 37  # spread over several /24s
    table = policy.coverage_table(ids, classes, networks, addresses)
    for now in (50.0, 150.0, 250.0):
        vector = table.covered_at(now)
        scalar = [
            policy.covers(Subscriber(int(i), str(c), str(n), int(a)), now=now)
            for i, c, n, a in zip(ids, classes, networks, addresses, strict=True)
        ]
        assert vector.tolist() == scalar
    rows = np.array([0, 1, 2, 3])
    times = np.array([50.0, 150.0, 250.0, 150.0])
    expected = [table.covered_at(t)[r] for r, t in zip(rows, times, strict=True)]
    assert table.covered_at(times, rows).tolist() == expected


# ---- rules and actions over time


def test_changes_replace_rules_and_action_from_their_time_on():
    narrower = RuleSet.parse(["*.twimg.com", "twitter.com"])
    reset = Action(ActionKind.RESET)
    policy = twitter_policy(
        changes=[PolicyChange(10 * DAY, rules=narrower), PolicyChange(30 * DAY, action=reset)]
    )
    assert policy.rules_at(now=10 * DAY - 1) == policy.rules
    assert policy.rules_at(now=10 * DAY) == narrower
    assert policy.rules_at(now=40 * DAY) == narrower  # an action change keeps the rules
    assert policy.action_at(now=30 * DAY - 1) == POLICE
    assert policy.action_at(now=30 * DAY) == reset
    assert policy.epochs() == [
        (-math.inf, 10 * DAY, policy.rules, POLICE),
        (10 * DAY, 30 * DAY, narrower, POLICE),
        (30 * DAY, math.inf, narrower, reset),
    ]
    with pytest.raises(ValueError):
        twitter_policy(changes=[PolicyChange(5.0), PolicyChange(5.0)])


def test_decide_literal_times():
    policy = twitter_policy(changes=[PolicyChange(5 * DAY, rules=RuleSet.parse(["*.twimg.com"]))])
    before = policy.decide("pbs.twimg.com", mobile(), now=3 * DAY)
    assert before == Decision(NO_ACTION, covered=False)
    hit = policy.decide("pbs.twimg.com", mobile(), now=4 * DAY)
    assert (hit.action, hit.policy, hit.rule, hit.covered) == (
        POLICE,
        "twitter",
        "*.twimg.com",
        True,
    )
    assert hit.throttled
    collateral = policy.decide("www.reddit.com", mobile(), now=4.5 * DAY)
    assert collateral.rule == "*t.co*" and collateral.throttled
    gone = policy.decide("www.reddit.com", mobile(), now=5 * DAY)
    assert gone == Decision(NO_ACTION, covered=True)
    assert not policy.decide("pbs.twimg.com.", mobile(), now=6 * DAY).throttled  # trailing dot
    assert not policy.decide(None, mobile(), now=6 * DAY).throttled  # no SNI
    fixed = Subscriber(2, "fixed", "isp")
    assert policy.decide("pbs.twimg.com", fixed, now=6 * DAY) == Decision(NO_ACTION, covered=False)


def test_destinations_match_by_or():
    policy = twitter_policy(destinations=[ipaddress.ip_network("203.0.113.0/24")])
    now = 5 * DAY
    by_dst = policy.decide("example.org", mobile(), now=now, dst="203.0.113.9")
    assert by_dst.throttled and by_dst.rule == "dst 203.0.113.0/24"
    assert policy.decide("pbs.twimg.com", mobile(), now=now, dst="198.51.100.1").throttled
    assert not policy.decide("example.org", mobile(), now=now, dst="198.51.100.1").throttled
    assert not policy.decide("example.org", mobile(), now=now).throttled


def test_policy_set_first_covering_match_wins():
    allow = Policy(
        "allow-api",
        RuleSet.parse(["api.twitter.com"]),
        NO_ACTION,
        {"mobile": Coverage()},
    )
    throttle = twitter_policy(rules=RuleSet.parse(["*twitter.com"]))
    block = Policy("block", RuleSet.parse(["*twitter.com"]), Action("reset"), {"fixed": Coverage()})
    policies = PolicySet([allow, throttle, block])
    now = 5 * DAY
    exempt = policies.decide("api.twitter.com", mobile(), now=now)
    assert exempt.policy == "allow-api" and not exempt.throttled
    assert policies.decide("twitter.com", mobile(), now=now).policy == "twitter"
    fixed = Subscriber(9, "fixed", "isp")
    assert policies.decide("twitter.com", fixed, now=now).action.kind is ActionKind.RESET
    control = policies.decide("vk.com", mobile(), now=now)
    assert control.action == NO_ACTION and control.policy is None and control.covered
    assert policies["block"] is block and len(policies) == 3
    with pytest.raises(ValueError):
        PolicySet([throttle, throttle])


def test_change_times_mark_coverage_and_changes_in_order():
    policy = twitter_policy(
        coverage={"mobile": Coverage(start_s=4 * DAY), "fixed": Coverage(end_s=70 * DAY)},
        changes=[
            PolicyChange(5 * DAY, rules=RuleSet.parse(["twitter.com"]), label="t.co dropped"),
            PolicyChange(30 * DAY, action=Action("reset")),
        ],
    )
    assert policy.change_times() == [
        (4 * DAY, "twitter: mobile covered"),
        (5 * DAY, "twitter: t.co dropped"),
        (30 * DAY, "twitter: action reset"),
        (70 * DAY, "twitter: fixed lifted"),
    ]


def test_inspection_defaults_and_checks():
    config = InspectionConfig()
    assert (config.idle_timeout_s, config.extra_inspection_packets) == (600.0, 15)
    assert (config.unparseable_limit_bytes, config.inspect_both_directions) == (101, True)
    for bad in (
        {"idle_timeout_s": 0},
        {"extra_inspection_packets": -1},
        {"unparseable_limit_bytes": 0},
    ):
        with pytest.raises(ValueError):
            InspectionConfig(**bad)
