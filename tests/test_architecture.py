"""The one rule of the house: ``throttle_lab/core`` is sans-I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import throttle_lab.core

FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "time",
    "random",
    "aiohttp",
    "select",
    "selectors",
    "subprocess",
    "os",
    "threading",
    "multiprocessing",
    "datetime",
    "signal",
}
CORE = Path(throttle_lab.core.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_io_clock_or_global_random() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 5  # the scan really looks at the core
    offenders = {str(path.relative_to(CORE)): sorted(_imports(path) & FORBIDDEN) for path in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\n")
    assert _imports(bad) & FORBIDDEN == {"time", "asyncio"}
