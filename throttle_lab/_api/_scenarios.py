"""Scenarios for notebooks and scripts: load, parse, override, check.

A :class:`~throttle_lab.scenario.Scenario` is compiled and forgets the TOML it came from,
but overriding a key later (``tl.override(s, "population.subscribers=500")``) and hashing
a sweep point both need that document. So every scenario made here is remembered with its
document (after all overrides so far) in a weak table: nothing leaks, and the Scenario
class stays as the scenario package defines it.

Overrides are the same ``KEY=VALUE`` texts as ``--set`` on the command line; a mapping
``{"population.subscribers": 500}`` is accepted too and turned into those texts.
"""

from __future__ import annotations

import copy
import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from throttle_lab.errors import ScenarioError, ThrottleLabError
from throttle_lab.scenario import (
    Scenario,
    ScenarioInvalid,
    apply_overrides,
    read_toml,
    validate_raw,
)
from throttle_lab.scenario._load import parse_toml

__all__ = ["check", "load", "override", "override_text", "parse", "scenario_document"]

Override = str | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Document:
    raw: dict[str, Any]  # the parsed TOML with every override so far applied
    source: str


_documents: weakref.WeakKeyDictionary[Scenario, _Document] = weakref.WeakKeyDictionary()


def override_text(key: str, value: Any) -> str:
    """``("policies[0].action.rate", "150kbit")`` -> ``'policies[0].action.rate=150kbit'``.

    Strings go in as written (so ``'150kbit'`` needs no quotes, as with ``--set``);
    booleans, numbers and lists of them become their TOML form.
    """
    if isinstance(value, str):
        return f"{key}={value}"
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"{key}={value!r}"
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        return f"{key}={json.dumps(list(value))}"  # a JSON array of these is a TOML array
    raise ScenarioError(
        "expected a string, number, boolean or a list of strings and numbers",
        key=key,
        value=value,
    )


def _texts(overrides: tuple[Override, ...]) -> list[str]:
    texts: list[str] = []
    for item in overrides:
        if isinstance(item, str):
            texts.append(item)
        else:
            texts.extend(override_text(key, value) for key, value in item.items())
    return texts


def _compile(raw: Mapping[str, Any], source: str, overrides: list[str]) -> Scenario:
    # validate_raw applies the overrides itself so that an error names the --set behind
    # it; the applied copy is kept for later overrides and sweep hashes.
    scenario = Scenario(validate_raw(raw, source=source, overrides=overrides), source=source)
    applied = apply_overrides(raw, overrides, source=source) if overrides else copy.deepcopy(raw)
    _documents[scenario] = _Document(dict(applied), source)
    return scenario


def load(path: str | Path, *overrides: Override) -> Scenario:
    """Load and validate a scenario file, with overrides applied.

    >>> s = load("scenarios/russia-twitter-2021.toml", "population.subscribers=500")
    >>> s.subscribers
    500

    Every problem raises :class:`~throttle_lab.errors.ScenarioError`, one line each.
    """
    return _compile(read_toml(path), str(path), _texts(overrides))


def parse(
    text_or_document: str | Mapping[str, Any], *overrides: Override, source: str = "<string>"
) -> Scenario:
    """A scenario from TOML text (or an already parsed dict), with overrides applied.

    >>> s = parse(Path("scenarios/russia-twitter-2021.toml").read_text())
    """
    if isinstance(text_or_document, str):
        raw = parse_toml(text_or_document, source=source)
    else:
        raw = copy.deepcopy(dict(text_or_document))
    return _compile(raw, source, _texts(overrides))


def scenario_document(scenario: Scenario) -> dict[str, Any]:
    """The parsed TOML behind ``scenario``, every override applied (a fresh copy).

    Known for scenarios made by :func:`load`, :func:`parse` and :func:`override`; for one
    loaded otherwise, its source file is read again and used only if it validates to the
    very same scenario (so an override made elsewhere is never silently lost).
    """
    known = _documents.get(scenario)
    if known is not None:
        return copy.deepcopy(known.raw)
    path = Path(scenario.source)
    if path.is_file():
        raw = read_toml(path)
        if validate_raw(raw, source=scenario.source) == scenario.spec:
            return raw
    raise ThrottleLabError(
        f"the document behind {scenario!r} is unknown: make it with throttle_lab.load,"
        " parse or override to change its keys"
    )


def override(scenario: Scenario, *overrides: Override) -> Scenario:
    """A new scenario with keys changed (the same paths as ``--set``); ``scenario`` stays.

    >>> policed = load("scenarios/russia-twitter-2021.toml")
    >>> shaped = override(policed, "policies[0].action.kind=shape",
    ...                   {"policies[0].action.queue": "64KB"})
    """
    return _compile(scenario_document(scenario), scenario.source, _texts(overrides))


def check(path: str | Path, *overrides: Override) -> list[str]:
    """The problems of a scenario file, one line each; ``[]`` when it is valid.

    >>> check("scenarios/russia-twitter-2021.toml", "population.subscribers=-1")
    ['scenarios/russia-twitter-2021.toml: --set population.subscribers = -1: expected ...']
    """
    try:
        validate_raw(read_toml(path), source=str(path), overrides=_texts(overrides))
    except ScenarioInvalid as invalid:
        return [str(problem) for problem in invalid.problems]
    except ScenarioError as error:
        return [str(error)]
    return []
