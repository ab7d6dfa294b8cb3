"""Real ClientHellos for the parser and rule tests.

``clienthellos.jsonl`` lives in the shared data folder next to the repository
(``<repo>/../shared/data``): 81 first-segment payloads captured from real clients, each
with the SNI an independent dissector read. Tests that need it skip with a clear reason
when it is absent; property tests fall back to hellos made with the ``ssl`` module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

REAL_HELLOS_PATH = Path(__file__).parents[2] / ".." / "shared" / "data" / "clienthellos.jsonl"
MISSING_REASON = f"real ClientHello captures not found at {REAL_HELLOS_PATH.resolve()}"


@dataclass(frozen=True)
class RealHello:
    source: str
    sni: str | None  # what the independent dissector read
    payload: bytes  # the first TCP segment's payload


def load_real_hellos() -> list[RealHello]:
    if not REAL_HELLOS_PATH.is_file():
        return []
    hellos = []
    for line in REAL_HELLOS_PATH.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            hellos.append(RealHello(record["source"], record["sni"], bytes.fromhex(record["hex"])))
    return hellos


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Give every test taking ``real_hello`` one case per captured hello."""
    if "real_hello" not in metafunc.fixturenames:
        return
    hellos = load_real_hellos()
    if hellos:
        ids = [f"{index:02d}-{hello.sni}" for index, hello in enumerate(hellos)]
        metafunc.parametrize("real_hello", hellos, ids=ids)
    else:
        skipped = pytest.param(None, marks=pytest.mark.skip(reason=MISSING_REASON))
        metafunc.parametrize("real_hello", [skipped], ids=["no-captures"])


@pytest.fixture(scope="session")
def real_hellos() -> list[RealHello]:
    """All captured hellos; skips the test when the file is absent."""
    hellos = load_real_hellos()
    if not hellos:
        pytest.skip(MISSING_REASON)
    return hellos


@pytest.fixture(scope="session")
def real_payloads() -> list[bytes]:
    """The captured payloads, or an empty list (for tests that have other seeds)."""
    return [hello.payload for hello in load_real_hellos()]
