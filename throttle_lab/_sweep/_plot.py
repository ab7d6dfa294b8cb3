"""A metric against a parameter: the plot of a sweep (or of any table of results).

The x axis follows the parameter's values: numbers stay numbers; text that is one kind of
human quantity (``'100kbit'``, ``'16KB'``, ``'60ms'``) is placed by its value and
labelled as written, so ``8KB, 16KB, 64KB`` are spaced as sizes, not as categories (on a
log axis when they span 20x or more); other text is categorical, in the order given.
Failed points (``status`` other than ``ok``) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from throttle_lab.errors import ScenarioError
from throttle_lab.units import parse_duration, parse_rate, parse_size

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["plot_metric"]

_LOG_SPAN = 20.0  # positive values spanning this ratio or more get a log axis
_MAX_TICKS = 15  # more distinct values than this: matplotlib's own ticks read better


def _positions(values: Sequence[Any]) -> tuple[list[float], list[str] | None]:
    """x positions for ``values`` and, when not plain numbers, the tick labels."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    texts = [str(v) for v in values]
    parsers: tuple[Callable[[str], float], ...] = (parse_rate, parse_size, parse_duration)
    for parse in parsers:
        try:
            return [float(parse(t)) for t in texts], texts
        except ScenarioError:
            continue
    order = list(dict.fromkeys(texts))
    return [float(order.index(t)) for t in texts], texts


def plot_metric(
    table: pd.DataFrame,
    metric: str,
    x: str,
    *,
    by: str | Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """A line of ``metric`` against ``x`` for each combination of the ``by`` columns.

    >>> tl.plot_metric(sweep.table, "mobile.median_s", "policies[0].action.rate",
    ...                by="policies[0].action.burst")
    >>> tl.plot_metric(tl.flow_table(results), "goodput_bps", "burst_bytes", by="policy")
    """
    from matplotlib.figure import Figure

    for column in (metric, x):
        if column not in table.columns:
            known = ", ".join(map(str, table.columns))
            raise ScenarioError(f"no such column; the table has: {known}", key=column)
    groups = [by] if isinstance(by, str) else list(by or [])
    rows = table.loc[table["status"] == "ok"] if "status" in table.columns else table
    fig = Figure(figsize=(9.0, 5.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    positions, labels = _positions(list(rows[x]))
    frame = rows.assign(_x=positions)
    grouped = frame.groupby(groups, sort=False) if groups else [((), frame)]
    for index, (values, group) in enumerate(grouped):
        ordered = group.sort_values("_x")
        keys = values if isinstance(values, tuple) else (values,)
        label = ", ".join(f"{g} = {v}" for g, v in zip(groups, keys, strict=True)) or metric
        ax.plot(
            ordered["_x"],
            ordered[metric],
            marker="o",
            color=f"C{index % 10}",
            linewidth=1.6,
            label=label,
        )
    if len(rows) == 0:
        ax.text(0.5, 0.5, "no finished points to show", ha="center", transform=ax.transAxes)
    finite = [p for p in positions if math.isfinite(p)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= _LOG_SPAN:
        ax.set_xscale("log")
        ax.minorticks_off()
    ticks = dict(zip(positions, labels or [f"{p:g}" for p in positions], strict=True))
    if 0 < len(ticks) <= _MAX_TICKS:  # the swept values themselves, as written
        ax.set_xticks(list(ticks), list(ticks.values()))
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    if groups:
        ax.legend(fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{metric} against {x}", loc="left")
    values = rows[metric].to_numpy(dtype=float)
    if np.isfinite(values).any() and np.nanmin(values) >= 0:
        ax.set_ylim(bottom=0)
    return fig
