"""A sweep's results: one row per point, a column per parameter, then the metrics.

Columns, in order: ``point`` (its index in the full grid), one per swept key (named by
the key, holding the value as the scenario read it), ``seed``, ``status`` (``ok`` or
``error``), ``error``, ``cached`` (taken from an earlier run), ``wall_s``, then the
metrics of :func:`~throttle_lab._sweep._point.point_metrics` (NaN for a failed point).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from throttle_lab._sweep._grid import SweepPoint

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["FIXED_COLUMNS", "TABLE_NAME", "SweepResult", "results_table"]

FIXED_COLUMNS = ("point", "seed", "status", "error", "cached", "wall_s")
TABLE_NAME = "sweep.parquet"


def _column(values: list[Any]) -> list[Any]:
    """One type per column, as Parquet wants: ints and floats become floats, any other
    mixture (or a list value) becomes text."""
    kinds = {type(v) for v in values}
    if len(kinds) == 1 and kinds <= {bool, int, float, str}:
        return values
    if kinds <= {int, float}:
        return [float(v) for v in values]
    return [v if isinstance(v, str) else json.dumps(v, default=str) for v in values]


def results_table(
    points: Sequence[SweepPoint], records: Mapping[int, Mapping[str, Any]]
) -> pd.DataFrame:
    """The table of a sweep from its points and their records (keyed by point index)."""
    import pandas as pd

    keys = list(points[0].params) if points else []
    metric_names: dict[str, None] = {}
    for point in points:
        metric_names.update(dict.fromkeys(records[point.index].get("metrics", {})))
    data: dict[str, list[Any]] = {"point": [p.index for p in points]}
    for key in keys:
        data[key] = _column([p.params[key] for p in points])
    rows = [records[p.index] for p in points]
    data["seed"] = [int(r.get("seed", -1)) for r in rows]
    data["status"] = [str(r.get("status", "error")) for r in rows]
    data["error"] = [str(r.get("error", "")) for r in rows]
    data["cached"] = [bool(r.get("cached", False)) for r in rows]
    data["wall_s"] = [float(r.get("wall_s", math.nan)) for r in rows]
    for name in metric_names:
        data[name] = [float(r.get("metrics", {}).get(name, math.nan)) for r in rows]
    return pd.DataFrame(data)


@dataclass
class SweepResult:
    """What :func:`throttle_lab.sweep` returns: the table, and how to plot it."""

    table: pd.DataFrame
    parameters: list[str]
    out: Path | None = None

    @property
    def metrics(self) -> list[str]:
        """The metric columns (everything after the parameters and bookkeeping)."""
        skip = {*FIXED_COLUMNS, *self.parameters}
        return [c for c in self.table.columns if c not in skip]

    @property
    def failed(self) -> pd.DataFrame:
        """The points that failed, with their error."""
        return self.table.loc[self.table["status"] != "ok"]

    def plot(self, metric: str = "median_s", x: str | None = None) -> Figure:
        """``metric`` against the parameter ``x`` (default: the first swept key), one
        line per combination of the other parameters."""
        from throttle_lab._sweep._plot import plot_metric

        x_key = x or self.parameters[0]
        others = [p for p in self.parameters if p != x_key]
        return plot_metric(self.table, metric, x_key, by=others)

    def save(self, out: str | Path | None = None) -> Path:
        """Write the table as ``OUT/sweep.parquet`` and return its path."""
        directory = Path(out) if out is not None else self.out
        if directory is None:
            raise ValueError("no folder: give out=")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TABLE_NAME
        self.table.to_parquet(path, index=False)
        return path

    def __repr__(self) -> str:
        ok = int((self.table["status"] == "ok").sum())
        cached = int(self.table["cached"].sum())
        return (
            f"<SweepResult {len(self.table)} points over {', '.join(self.parameters)}:"
            f" {ok} ok ({cached} from the cache), {len(self.table) - ok} failed>"
        )
