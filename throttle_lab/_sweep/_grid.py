"""The points of a sweep: a grid of ``--set`` keys, every combination or a seeded sample.

``--grid policies[0].action.rate=100kbit,140kbit,200kbit`` is one axis: a key (the same
dotted paths as ``--set``) and its values, each written as ``--set`` would take it. Values
are split at commas outside brackets and quotes, so ``match=["a","b"],["c"]`` is two
values. A point is one value per axis, as ``KEY=VALUE`` override texts.

Seeds: a point's seed is derived from the scenario's seed and the point's overrides (a
hash), so a point gets the same seed whichever grid or sample it appears in, and points
do not share random draws by accident. ``same_seed`` gives every point the scenario's
seed instead (common random numbers: differences between points then come from the
parameters alone, and the flow-model grids are shared). A grid over ``scenario.seed``
itself sets the seed explicitly, for replicates.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from throttle_lab._api._scenarios import override_text
from throttle_lab.errors import ScenarioError

__all__ = [
    "SEED_KEY",
    "GridAxis",
    "SweepPoint",
    "combinations_count",
    "grid_axes",
    "parse_grid_option",
    "point_seed",
    "sweep_points",
]

SEED_KEY = "scenario.seed"
_OPENERS, _CLOSERS = "[{", "]}"


@dataclass(frozen=True, slots=True)
class GridAxis:
    """One swept key and its values as override texts (``'150kbit'``, ``'0.5'``)."""

    key: str
    texts: tuple[str, ...]

    def values(self) -> list[Any]:
        """The values as the scenario reads them: TOML values, else strings."""
        return [parse_value(text) for text in self.texts]


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One combination: its position in the full grid and one override per axis."""

    index: int
    overrides: tuple[str, ...]
    params: dict[str, Any]


def parse_value(text: str) -> Any:
    """How ``--set`` reads a value: a TOML value when it is one, else the stripped text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _split_values(text: str) -> list[str]:
    """Split at commas that are outside brackets, braces and quotes."""
    values, depth, quote, start = [], 0, "", 0
    for pos, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:pos].strip())
            start = pos + 1
    values.append(text[start:].strip())
    return values


def parse_grid_option(text: str) -> GridAxis:
    """``'population.subscribers=100,200'`` -> ``GridAxis('population.subscribers', ...)``."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    values = _split_values(rest) if sep else []
    if not key or not sep or not values or any(v == "" for v in values):
        raise ScenarioError(
            "expected KEY=V1,V2,... with KEY a dotted path such as policies[0].action.rate",
            key="--grid",
            value=text,
        )
    return GridAxis(key, tuple(values))


def grid_axes(grid: Mapping[str, Iterable[Any]] | Sequence[str]) -> list[GridAxis]:
    """Axes from ``--grid`` texts or a mapping ``{key: [values]}`` (Python values become
    override texts: ``140_000`` -> ``'140000'``, ``True`` -> ``'true'``)."""
    if isinstance(grid, Mapping):
        axes = []
        for key, values in grid.items():
            texts = tuple(override_text(key, v).partition("=")[2] for v in values)
            if not texts:
                raise ScenarioError("expected at least one value", key=key)
            axes.append(GridAxis(key, texts))
    else:
        axes = [parse_grid_option(text) for text in grid]
    keys = [axis.key for axis in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise ScenarioError("the same key is swept twice", key="--grid", value=key)
    if not axes:
        raise ScenarioError("nothing to sweep: give at least one --grid KEY=V1,V2", key="--grid")
    return axes


def sweep_points(
    axes: Sequence[GridAxis], *, sample: int | None = None, sample_seed: int = 0
) -> list[SweepPoint]:
    """Every combination, in grid order (the last axis varies fastest), or ``sample`` of
    them drawn without replacement by a generator seeded with ``sample_seed``."""
    sizes = [len(axis.texts) for axis in axes]
    total = int(np.prod(sizes))
    if sample is None or sample >= total:
        chosen: Iterable[int] = range(total)
    elif sample < 1:
        raise ScenarioError("expected a positive number of points", key="--sample", value=sample)
    else:
        rng = np.random.default_rng(sample_seed)
        chosen = sorted(int(i) for i in rng.choice(total, size=sample, replace=False))
    all_values = [axis.values() for axis in axes]
    points = []
    for index in chosen:
        digits = np.unravel_index(index, sizes)
        overrides = tuple(
            f"{axis.key}={axis.texts[d]}" for axis, d in zip(axes, digits, strict=True)
        )
        params = {
            axis.key: values[d] for axis, values, d in zip(axes, all_values, digits, strict=True)
        }
        points.append(SweepPoint(index, overrides, params))
    return points


def point_seed(base_seed: int, point: SweepPoint, *, same_seed: bool = False) -> int:
    """The seed of a point (see the module docstring)."""
    explicit = point.params.get(SEED_KEY)
    if isinstance(explicit, int) and not isinstance(explicit, bool):
        return explicit
    if same_seed:
        return base_seed
    blob = json.dumps([base_seed, sorted(point.overrides)]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFF_FFFF


def combinations_count(axes: Sequence[GridAxis]) -> int:
    """How many points the full grid has."""
    return int(np.prod([len(a.texts) for a in axes]))
