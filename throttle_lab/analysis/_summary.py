"""Numbers a reader wants from a run: latency per class, network, media and period.

Works on the loads table only (the record schema), so the same code summarises a
simulated, emulated or probed run. Periods are the stretches between the policy's
change times (coverage starting or ending, rules or actions changing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LONG_LOAD_S", "assign_periods", "summarise"]

LONG_LOAD_S = 10.0  # "took ages": the share of loads over this many seconds is reported


def assign_periods(start_s: pd.Series, change_times: Sequence[float]) -> np.ndarray:
    """Index of the period each load started in (0 = before the first change)."""
    edges = np.asarray(sorted(set(change_times)), dtype=float)
    return np.asarray(np.searchsorted(edges, start_s.to_numpy(), "right"))


def _group_stats(group: pd.DataFrame) -> dict[str, Any]:
    total = group["total_s"].to_numpy()
    cf = group["counterfactual_total_s"].to_numpy()
    throttled = group["throttled"].to_numpy()
    stats: dict[str, Any] = {
        "loads": len(group),
        "throttled_loads": int(throttled.sum()),
        "subscribers": int(group["subscriber"].nunique()),
        "subscribers_affected": int(group.loc[throttled, "subscriber"].nunique()),
    }
    if len(group) == 0:
        return stats
    q = np.quantile(total, [0.5, 0.9, 0.99])
    has_cf = not np.all(np.isnan(cf))
    stats.update(
        median_s=float(q[0]),
        p90_s=float(q[1]),
        p99_s=float(q[2]),
        share_over_10s=float(np.mean(total > LONG_LOAD_S)),
    )
    if has_cf:
        slowdown = total / cf
        stats.update(
            counterfactual_median_s=float(np.median(cf)),
            counterfactual_p90_s=float(np.quantile(cf, 0.9)),
            counterfactual_share_over_10s=float(np.mean(cf > LONG_LOAD_S)),
            slowdown_median=float(np.median(slowdown)),
            slowdown_p90=float(np.quantile(slowdown, 0.9)),
            slowdown_of_throttled_median=(
                float(np.median(slowdown[throttled])) if throttled.any() else None
            ),
        )
    return stats


def _grouped(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    rows = []
    for values, group in frame.groupby(keys, observed=True, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        rows.append({**dict(zip(keys, map(_plain, values), strict=True)), **_group_stats(group)})
    return rows


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def summarise(
    loads: pd.DataFrame,
    *,
    change_times: Sequence[tuple[float, str]] = (),
    period_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` body: overall, per class, class x period, class x network,
    class x media. ``period_names`` label the periods (default: their index)."""
    times = [t for t, _ in change_times]
    frame = loads.assign(period=assign_periods(loads["start_s"], times))
    if period_names is not None:
        frame["period"] = pd.Categorical.from_codes(frame["period"], list(period_names))
    return {
        "overall": _group_stats(frame),
        "by_class": _grouped(frame, ["device_class"]),
        "by_class_period": _grouped(frame, ["device_class", "period"]),
        "by_class_network": _grouped(frame, ["device_class", "network"]),
        "by_class_media": _grouped(frame, ["device_class", "media"]),
    }
