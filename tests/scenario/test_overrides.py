"""``--set KEY=VALUE`` overrides: typed values, created tables, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from throttle_lab.cli import main
from throttle_lab.errors import ScenarioError
from throttle_lab.scenario import apply_overrides, load_scenario, read_toml

DEFAULT = Path(__file__).parents[2] / "scenarios" / "russia-twitter-2021.toml"


def test_values_are_toml_when_they_parse_else_strings():
    raw = {"a": {"b": 1}, "items": [{"x": 1}]}
    result = apply_overrides(
        raw,
        [
            "a.b=2",
            "a.c=true",
            "a.d=150kbit",
            'a.e=["x", "y"]',
            "a.f={ kind = 'reset' }",
            "items[0].x=2.5",
            "items[1].x=3",  # index == length appends
            'a."dotted.key"=1',
            "new.table.key=2021-03-10T00:00:00Z",
        ],
    )
    assert result["a"]["b"] == 2 and result["a"]["c"] is True
    assert result["a"]["d"] == "150kbit"
    assert result["a"]["e"] == ["x", "y"] and result["a"]["f"] == {"kind": "reset"}
    assert result["items"] == [{"x": 2.5}, {"x": 3}]
    assert result["a"]["dotted.key"] == 1
    assert result["new"]["table"]["key"].isoformat() == "2021-03-10T00:00:00+00:00"
    assert raw == {"a": {"b": 1}, "items": [{"x": 1}]}  # the input is not modified


def test_valid_overrides_reach_the_compiled_scenario():
    scenario = load_scenario(
        DEFAULT,
        ["population.subscribers=100000", "policies[0].action.rate=150kbit", "scenario.seed=7"],
    )
    assert scenario.subscribers == 100_000
    assert scenario.policies["twitter-throttle"].action.rate_bps == 150e3
    assert scenario.seed == 7 and scenario.policies["twitter-throttle"].seed == 7


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "policies[0].action.rate=150kbps",
            "--set policies[0].action.rate = '150kbps': unknown rate unit",
        ),
        ("population.subscribers=-5", "--set population.subscribers = -5: expected a value > 0"),
        (
            "policies[0].action.rat=1",
            "--set policies[0].action.rat = 1: unknown key; did you mean 'rate'?",
        ),
        ("policies[3].name=x", "--set policies[3].name: no policies[3]: the array has 1 entries"),
        ("scenario.name.x=1", "--set scenario.name.x: scenario.name is not a table"),
        ("no-equals-sign", "--set no-equals-sign: expected KEY=VALUE"),
        (
            "population.classes.mobile.share=0.6",
            "population.classes: class shares (mobile 0.6, fixed 0.45)",
        ),
    ],
)
def test_invalid_overrides_name_the_key(override: str, expected: str):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(DEFAULT, [override])
    line = str(caught.value)
    assert line.startswith(f"{DEFAULT}: ")
    assert expected in line
    assert "\n" not in line


def test_a_problem_caused_by_an_override_says_so():
    with pytest.raises(ScenarioError) as caught:
        load_scenario(DEFAULT, ["population.classes.mobile.share=0.6"])
    assert str(caught.value).endswith("(after --set population.classes.mobile.share)")


def test_cli_set_flag(capsys: pytest.CaptureFixture[str]):
    main(["validate", str(DEFAULT), "--set", "policies[0].action.rate=150kbit"])
    assert ": ok (" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(DEFAULT), "--set", "policies[0].action.rate=150kbps"])
    assert exited.value.code == 2
    assert "--set policies[0].action.rate = '150kbps'" in capsys.readouterr().err


def test_read_toml_gives_the_raw_document_overrides_work_on():
    raw = read_toml(DEFAULT)
    assert raw["population"]["subscribers"] == 2_000
