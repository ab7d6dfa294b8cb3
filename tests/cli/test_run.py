"""`throttle-lab run` end to end, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import CliRun

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "scenarios" / "russia-twitter-2021.toml")


def test_run_writes_results_and_prints_the_table(
    cli_run: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "ru"
    code, stdout, err = cli_run(
        "run",
        DEFAULT,
        "--out",
        str(out),
        "--set",
        "population.subscribers=60",
        "--seed",
        "5",
        "--no-progress",
    )
    assert code == 0, err
    assert "mobile" in stdout and "before 10 Mar" in stdout and str(out) in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["seed"] == 5 and summary["scenario"]["subscribers"] == 60
    assert (out / "loads.parquet").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "population.subscribers=-5"], "population.subscribers"),
        (["--set", "policies[0].action.rate=140kbps"], "policies[0].action.rate"),
        (["--set", "population.nonsense=1"], "population.nonsense"),
        (["--set", "no-equals-sign"], "--set"),
        (["--engine", "warp"], "--engine"),
    ],
)
def test_bad_overrides_and_flags_give_one_line(
    cli_run: CliRun, args: list[str], message: str
) -> None:
    code, _, err = cli_run("run", DEFAULT, "--no-progress", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_missing_scenario_file(cli_run: CliRun, tmp_path: Path) -> None:
    code, _, err = cli_run("run", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml" in err and len(err.strip().splitlines()) == 1
