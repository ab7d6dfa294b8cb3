"""From TOML text or a dict to core objects: rules, destinations, networks, errors."""

from __future__ import annotations

import pytest

from throttle_lab.core import CoverageUnit, Subscriber
from throttle_lab.errors import ScenarioError
from throttle_lab.scenario import Scenario, ScenarioInvalid, parse_scenario

MINIMAL = """
[scenario]
name = "mini"
start = 2021-03-06T00:00:00Z
horizon = "10d"

[population]
subscribers = 10
[population.classes.mobile]
share = 1.0
down = "8mbit"
up = "2mbit"
rtt = "60ms"

[[policies]]
name = "p"
match = [{ pattern = "T.CO", match = "substring", trailing_dot_evades = false }, "*.twimg.com"]
destinations = ["203.0.113.0/24"]
action = { kind = "shape", rate = "140kbit", burst = "16KB", queue = "64KiB" }
[policies.coverage.mobile]
unit = "prefix"
prefix_length = 16
fraction = 1.0
"""
WHO = Subscriber(1, "mobile", "<mobile>", address=0x0A000001)


def test_rule_tables_destinations_and_shaping_compile():
    scenario = parse_scenario(MINIMAL, source="mini.toml")
    policy = scenario.policies["p"]
    assert [str(rule) for rule in policy.rules] == ["*t.co*", "*.twimg.com"]
    assert policy.action.queue_bytes == 65_536
    assert policy.coverage["mobile"].unit is CoverageUnit.PREFIX
    # The table form turned trailing-dot evasion off for this rule only.
    assert policy.decide("reddit.com.", WHO, now=0.0).rule == "*t.co*"
    assert not policy.decide("pbs.twimg.com.", WHO, now=0.0).throttled
    assert (
        policy.decide("example.org", WHO, now=0.0, dst="203.0.113.7").rule == "dst 203.0.113.0/24"
    )


def test_a_class_without_networks_gets_an_implicit_one():
    scenario = parse_scenario(MINIMAL)
    assert [n.name for n in scenario.networks_of("mobile")] == ["<mobile>"]
    assert scenario.media == ()  # no [workload]: no media


def test_dict_input_and_from_toml_agree():
    import tomllib

    from_text = Scenario.from_toml(MINIMAL)
    from_dict = parse_scenario(tomllib.loads(MINIMAL), source="dict")
    assert from_text.summary() == from_dict.summary() == "1 classes, 1 policies, 0 changes"
    assert from_text.change_times() == from_dict.change_times() == []


def test_toml_syntax_error_names_line_and_column():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(MINIMAL.replace('name = "mini"', "name = mini"), source="inline")
    assert str(caught.value).startswith("inline:3:8: TOML syntax error")


def test_invalid_scenario_carries_every_problem():
    broken = MINIMAL.replace('rate = "140kbit"', 'rate = "fast"').replace(
        "share = 1.0", "share = 2"
    )
    with pytest.raises(ScenarioInvalid) as caught:
        parse_scenario(broken, source="b.toml")
    keys = [problem.key for problem in caught.value.problems]
    assert keys == ["population.classes.mobile.share", "policies[0].action.rate"]
    assert caught.value.key == keys[0]  # the first problem, for plain ScenarioError handlers
