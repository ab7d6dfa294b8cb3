"""Helpers shared by the subcommands' flag handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from throttle_lab.errors import ScenarioError

__all__ = ["parse_flag"]

T = TypeVar("T")


def parse_flag(flag: str, parse: Callable[[str], T], text: str | None) -> T | None:
    """Parse a human quantity, naming the flag in the one-line error."""
    if text is None:
        return None
    try:
        return parse(text)
    except ScenarioError as exc:
        raise ScenarioError(exc.message, key=flag, value=text) from None
