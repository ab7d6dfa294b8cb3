"""A corpus of broken scenario files, one mistake each, each named in one clear line.

Each file's first line says ``# expect: <part of the error line>``; that part names the
key path and what was expected. The test also checks the line names the file, and that
the CLI prints it without a traceback and exits 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from throttle_lab.cli import main
from throttle_lab.errors import ScenarioError
from throttle_lab.scenario import load_scenario

BROKEN = sorted((Path(__file__).parent / "broken").glob("*.toml"))


def expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_the_corpus_is_big_enough():
    assert len(BROKEN) >= 20


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_one_line_naming_file_key_and_expectation(path: Path):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    line = str(caught.value)
    assert "\n" not in line, f"one mistake must give one line, got:\n{line}"
    assert line.startswith(str(path))
    assert expectation(path) in line


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_cli_exits_2_with_the_line_and_no_traceback(path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(path)])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1 and expectation(path) in err


def test_validate_reports_every_file_not_only_the_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    good = Path(__file__).parents[2] / "scenarios" / "russia-twitter-2021.toml"
    with pytest.raises(SystemExit):
        main(["validate", str(BROKEN[0]), str(tmp_path), str(tmp_path / "missing.toml"), str(good)])
    out, err = capsys.readouterr()
    assert f"{tmp_path}: is a directory, expected a scenario file (.toml)" in err
    assert f"{tmp_path / 'missing.toml'}: no such file" in err
    assert str(BROKEN[0]) in err
    assert out.strip().endswith(": ok (2 classes, 1 policies, 2 changes)")


def test_several_mistakes_give_one_line_each(tmp_path: Path):
    text = (BROKEN[0].parent / "unknown-key.toml").read_text(encoding="utf-8")
    text = text.replace('rate = "140kbit"', 'rate = "140kbps"').replace(
        "share = 0.6", "share = 1.6"
    )
    path = tmp_path / "two.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any("population.subscriber = 100: unknown key" in line for line in lines)
    assert any("population.classes.mobile.share = 1.6" in line for line in lines)
    assert any("policies[0].action.rate = '140kbps'" in line for line in lines)
